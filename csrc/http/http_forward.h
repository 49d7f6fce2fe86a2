// --http-header-forward-pattern on the native infer path: request headers whose name
// matches become string parameters of the inference request, as in tritonserver's
// HTTP frontend (RE2, partial match, case-insensitive unless the pattern starts with
// "(?-i)"), so that forwarding no longer sends inference through Python.
#pragma once

#include <event2/keyvalq_struct.h>

#include <memory>
#include <string>

#include "core/infer_request.h"
#include "core/status.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace tritonx {
namespace httpfe {

// Thread safety: immutable once created; every worker thread may use it at once.
// Ownership: the HttpServer's options own it (shared) for the server's lifetime.
class HeaderForwarder {
 public:
  // INVALID_ARG when RE2 cannot compile `pattern` (which must not be empty).
  static Status Create(const std::string& pattern,
                       std::shared_ptr<const HeaderForwarder>* out);
  ~HeaderForwarder();
  HeaderForwarder(const HeaderForwarder&) = delete;
  HeaderForwarder& operator=(const HeaderForwarder&) = delete;

  // Appends each matching header (name as sent, value as UTF-8, invalid bytes
  // replaced) to `params`, after the request's own: a header wins over a JSON
  // parameter of the same name. A matching name Triton keeps for itself fails the
  // request with Triton's message, INVALID_ARG.
  Status Forward(const evkeyvalq* headers, Parameters* params) const;

 private:
  HeaderForwarder() = default;
  std::unique_ptr<re2::RE2> regex_;
};

// The W3C trace context headers (traceparent, tracestate) of a request, into it.
void ReadTraceContext(const evkeyvalq* headers, InferenceRequest* request);

}  // namespace httpfe
}  // namespace tritonx
