// What a reply is made of: the Outgoing of a plain or error body, and of a
// rendered infer response (JSON header, binary outputs written from the tensors
// themselves, optional gzip/deflate).
#include <event2/buffer.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/http_messages.h"
#include "http_compression.h"
#include "http_infer_codec.h"
#include "http_server_impl.h"

namespace tritonx {
namespace httpfe {

Outgoing Simple(int status, const std::string& body, const char* content_type,
                HttpHeaders extra) {
  Outgoing out;
  out.status = status;
  if (content_type) out.headers.emplace_back("Content-Type", content_type);
  for (auto& h : extra) out.headers.push_back(std::move(h));
  out.body = evbuffer_new();
  if (!body.empty()) evbuffer_add(out.body, body.data(), body.size());
  return out;
}

Outgoing Error(int status, const std::string& message, HttpHeaders extra) {
  return Simple(status, ErrorBody(message), "application/json", std::move(extra));
}

Outgoing PlainError(int status, const std::string& message, HttpHeaders extra) {
  return Simple(status, ErrorBody(message), "text/plain", std::move(extra));
}

Outgoing RenderReply(std::unique_ptr<InferenceResponse> result,
                     const std::string& request_id, const OutputEncoding& encoding,
                     Encoding compression, const std::string& binary_mime) {
  if (!result->status.ok()) {
    return Error(HttpStatusOf(result->status.code()), result->status.message());
  }
  std::string json;
  std::vector<size_t> binaries;
  Status status = RenderInferResponse(*result, request_id, encoding, &json, &binaries);
  if (!status.ok()) return Error(HttpStatusOf(status.code()), status.message());
  Outgoing out;
  if (!binaries.empty() && !binary_mime.empty()) {
    out.headers.emplace_back("Content-Type", binary_mime + std::to_string(json.size()));
  } else {
    out.headers.emplace_back("Content-Type", binaries.empty()
                                                 ? "application/json"
                                                 : "application/octet-stream");
  }
  if (compression == Encoding::kGzip || compression == Encoding::kDeflate) {
    std::vector<Span> parts{{json.data(), json.size()}};
    for (size_t i : binaries) {
      const Tensor& t = result->outputs[i];
      parts.push_back({t.data, t.byte_size});
    }
    std::string packed = Deflate(compression, parts.data(), parts.size());
    out.headers.emplace_back("Content-Encoding",
                             compression == Encoding::kGzip ? "gzip" : "deflate");
    if (!binaries.empty()) {
      out.headers.emplace_back("Inference-Header-Content-Length",
                               std::to_string(json.size()));
    }
    out.body = evbuffer_new();
    evbuffer_add(out.body, packed.data(), packed.size());
    return out;
  }
  if (!binaries.empty() && binary_mime.empty()) {
    out.headers.emplace_back("Inference-Header-Content-Length",
                             std::to_string(json.size()));
  }
  out.body = evbuffer_new();
  evbuffer_add(out.body, json.data(), json.size());
  std::shared_ptr<InferenceResponse> keep(std::move(result));
  for (size_t i : binaries) {
    const Tensor& t = keep->outputs[i];
    if (t.byte_size >= 64 * 1024) {
      // Large outputs are written from the tensor itself; the buffer holds the
      // response until the bytes have gone out.
      auto* hold = new std::shared_ptr<InferenceResponse>(keep);
      evbuffer_add_reference(
          out.body, t.data, t.byte_size,
          [](const void*, size_t, void* arg) {
            delete static_cast<std::shared_ptr<InferenceResponse>*>(arg);
          },
          hold);
    } else if (t.byte_size > 0) {
      evbuffer_add(out.body, t.data, t.byte_size);
    }
  }
  out.status = 200;
  return out;
}

}  // namespace httpfe
}  // namespace tritonx
