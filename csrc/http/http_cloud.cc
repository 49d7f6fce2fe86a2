#include "http_cloud.h"

#include <event2/http.h>
#include <re2/re2.h>

#include <cstring>

namespace tritonx::httpfe {

Status CloudInferRoute::Create(const HttpCloudInfer& spec,
                               std::shared_ptr<const CloudInferRoute>* out) {
  std::shared_ptr<CloudInferRoute> route(new CloudInferRoute());
  route->spec_ = spec;
  if (!spec.path_pattern.empty()) {
    route->pattern_ = std::make_unique<re2::RE2>(spec.path_pattern, RE2::Quiet);
    if (!route->pattern_->ok()) {
      return Status(StatusCode::kInvalidArg, "invalid route pattern '" +
                                                 spec.path_pattern +
                                                 "': " + route->pattern_->error());
    }
  }
  if (spec.binary_reply_mime) route->reply_mime_ = spec.binary_mime;
  *out = std::move(route);
  return Status::Ok();
}

CloudInferRoute::~CloudInferRoute() = default;

const std::string& CloudInferRoute::model() const { return spec_.model; }

bool CloudInferRoute::Accepts(const std::string& path, const evkeyvalq* headers,
                              size_t body_size, int64_t* header_length) const {
  const bool on_route = pattern_ ? RE2::FullMatch(path, *pattern_) : path == spec_.path;
  if (!on_route) return false;
  auto* in = const_cast<evkeyvalq*>(headers);  // evhttp's lookups take non-const
  if (!spec_.control_header.empty() &&
      evhttp_find_header(in, spec_.control_header.c_str()) != nullptr) {
    return false;
  }
  // The endpoints read bodies as sent: the Python frontend answers those.
  if (evhttp_find_header(in, "Content-Encoding") != nullptr) return false;
  const char* type = evhttp_find_header(in, "Content-Type");
  const char* found = type ? std::strstr(type, spec_.binary_mime.c_str()) : nullptr;
  if (found == nullptr) {
    *header_length = body_size == 0 ? 0 : -1;
    return true;
  }
  if (found != type) return false;  // refused by the endpoint, in its words
  // Plain digits only; any other spelling is read (or refused) by the endpoint.
  const char* digits = type + spec_.binary_mime.size();
  const size_t count = std::strlen(digits);
  if (count == 0 || count > 9 || std::strspn(digits, "0123456789") != count) {
    return false;
  }
  const int64_t size = std::strtoll(digits, nullptr, 10);
  if (static_cast<size_t>(size) > body_size) return false;
  // The whole body as JSON header is a JSON body; 0 is a raw one.
  *header_length = (size != 0 && static_cast<size_t>(size) == body_size) ? -1 : size;
  return true;
}

}  // namespace tritonx::httpfe
