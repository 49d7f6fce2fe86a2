#include "http_forward.h"

#include <event2/http.h>
#include <re2/re2.h>

#include <cstring>

#include "core/http_messages.h"

namespace tritonx {
namespace httpfe {
namespace {

// Length of the valid UTF-8 sequence at `s` (0 if none starts there).
size_t Utf8Length(const unsigned char* s, size_t left) {
  const unsigned char c = s[0];
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (left < n || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  }
  return n;
}

// The value as Python's bytes.decode("utf-8", "replace") would give it (per bad
// byte): parameters are Python strings on the model's side.
std::string AsUtf8(const char* value) {
  const auto* s = reinterpret_cast<const unsigned char*>(value);
  const size_t size = std::strlen(value);
  std::string out;
  out.reserve(size);
  for (size_t i = 0; i < size;) {
    const size_t n = Utf8Length(s + i, size - i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(value + i, n);
      i += n;
    }
  }
  return out;
}

}  // namespace

Status HeaderForwarder::Create(const std::string& pattern,
                               std::shared_ptr<const HeaderForwarder>* out) {
  RE2::Options options;
  options.set_log_errors(false);
  // tritonserver matches case-insensitively unless the pattern itself says
  // otherwise; "(?-i)" at its start then overrides this prefix.
  auto regex = std::make_unique<re2::RE2>("(?i)" + pattern, options);
  if (!regex->ok()) {
    return Status(StatusCode::kInvalidArg, "invalid --http-header-forward-pattern '" +
                                               pattern + "': " + regex->error());
  }
  std::shared_ptr<HeaderForwarder> forwarder(new HeaderForwarder());
  forwarder->regex_ = std::move(regex);
  *out = std::move(forwarder);
  return Status::Ok();
}

HeaderForwarder::~HeaderForwarder() = default;

Status HeaderForwarder::Forward(const evkeyvalq* headers, Parameters* params) const {
  for (const evkeyval* kv = headers->tqh_first; kv != nullptr; kv = kv->next.tqe_next) {
    if (!RE2::PartialMatch(kv->key, *regex_)) continue;
    if (HttpHeaderReserved(kv->key)) {
      return Status(StatusCode::kInvalidArg, HttpReservedHeader(kv->key));
    }
    params->emplace_back(kv->key, ParameterValue(AsUtf8(kv->value)));
  }
  return Status::Ok();
}

void ReadTraceContext(const evkeyvalq* headers, InferenceRequest* request) {
  // evhttp finds a header whatever its case.
  if (const char* parent = evhttp_find_header(headers, "traceparent")) {
    request->traceparent = parent;
  }
  if (const char* state = evhttp_find_header(headers, "tracestate")) {
    request->tracestate = state;
  }
}

}  // namespace httpfe
}  // namespace tritonx
