// The inference route of a cloud endpoint served natively: SageMaker's
// `POST /invocations` and Vertex AI's predict route are inference on one fixed model,
// with the JSON header's size carried by the content type instead of
// Inference-Header-Content-Length. C++ takes only the requests it can answer the way
// the endpoint does; every other one (another path or method, a redirect header, a
// compressed body, an unusual content type, a model that would be refused) goes to
// the control handler, where the Python frontend (frontends/sagemaker.py,
// vertex_ai.py) gives the endpoint's own answer. So the rules and error texts live in
// one place, and the common request never enters Python.
#pragma once

#include <event2/keyvalq_struct.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace tritonx {

// A cloud endpoint's inference route (SageMaker, Vertex AI). A server with one
// serves no KServe route in C++.
struct HttpCloudInfer {
  // POST to this path (exact), or to a path `path_pattern` fully matches (RE2, as
  // tritonserver's Vertex AI routes), is inference on `model`'s latest version.
  std::string path;
  std::string path_pattern;
  std::string model;
  // The content type that carries the JSON header's size: "<binary_mime><N>".
  std::string binary_mime;
  // Binary outputs answered with "<binary_mime><json size>" (SageMaker) rather
  // than KServe's framing (Vertex AI).
  bool binary_reply_mime = false;
  // Requests carrying this header go to the control handler (Vertex AI's
  // X-Vertex-Ai-Triton-Redirect).
  std::string control_header;
};

namespace httpfe {

// Thread safety: immutable once created; every worker thread may use it at once.
// Ownership: the HttpServer owns it for the server's lifetime.
class CloudInferRoute {
 public:
  // INVALID_ARG when RE2 cannot compile `spec.path_pattern`.
  static Status Create(const HttpCloudInfer& spec,
                       std::shared_ptr<const CloudInferRoute>* out);
  ~CloudInferRoute();
  CloudInferRoute(const CloudInferRoute&) = delete;
  CloudInferRoute& operator=(const CloudInferRoute&) = delete;

  // Whether C++ serves this POST of `body_size` bytes to `path` (no query). Sets
  // `header_length`: -1 for a JSON body, else the JSON bytes at its start (0: the
  // body is the raw bytes of the model's only input).
  bool Accepts(const std::string& path, const evkeyvalq* headers, size_t body_size,
               int64_t* header_length) const;

  const std::string& model() const;
  // The content type of answers with binary outputs ("<mime><json size>"); empty:
  // KServe's framing (application/octet-stream, Inference-Header-Content-Length).
  const std::string& reply_mime() const { return reply_mime_; }

 private:
  CloudInferRoute() = default;
  HttpCloudInfer spec_;
  std::unique_ptr<re2::RE2> pattern_;
  std::string reply_mime_;
};

}  // namespace httpfe
}  // namespace tritonx
