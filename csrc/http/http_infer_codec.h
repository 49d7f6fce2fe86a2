// KServe v2 infer bodies over HTTP, in C++: JSON (RapidJSON) and the binary tensor
// extension in, JSON and binary out. Checks, their order and their messages follow
// the Python frontend (python/tritonx/frontends/http_infer.py and codec.py), which
// follows Triton's HTTP frontend; the tensors themselves (names, shapes, sizes
// against the model) are left to the core's ValidateRequest, as for gRPC, and the
// request parameters go through the core's ApplyRequestParameters.
//
// Stateless functions; safe from any thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/infer_request.h"
#include "core/model_spec.h"
#include "core/shared_memory_registry.h"
#include "core/status.h"

namespace tritonx {
namespace httpfe {

// Inputs, and requested outputs, one request may name (as in the Python frontend).
inline constexpr size_t kMaxTensors = 4096;

// HTTP status for a core status code: tritonx::HttpStatusOf (core/status.h).

// `{"error": "<message>"}` exactly as the Python frontend writes it.
std::string ErrorBody(const std::string& message);

// How each output travels back: binary (after the JSON header), JSON `data`, or
// written into a shared memory region (then only its name, datatype and shape are
// in the JSON, as in Triton).
struct OutputEncoding {
  bool default_binary = false;
  std::vector<std::pair<std::string, bool>> explicit_binary;  // per-output flags
  ShmOutputs shm_outputs;
  bool Binary(const std::string& name) const;
};

// `Inference-Header-Content-Length` with atoi semantics; it must lie in
// [0, body_size] (INVALID_ARG with Triton's message otherwise).
Status ParseHeaderLength(const char* value, size_t body_size, size_t* out);

// A JSON body (`has_header_length` false: the whole body is JSON) or a binary
// extension body (`header_length` bytes of JSON, then the binary inputs). Tensor
// data points into `body`, which `owner` keeps alive, or into a region of `shm`
// for tensors with `shared_memory_region` parameters (null `shm`: refused).
Status ParseInferBody(const char* body, size_t body_size,
                      const std::shared_ptr<const void>& owner, bool has_header_length,
                      size_t header_length, const std::string& model_name,
                      InferenceRequest* out, OutputEncoding* encoding,
                      const SharedMemoryRegistry* shm = nullptr);

// The response: `*json` is the JSON header; `*binaries` the indices (into
// response.outputs) of outputs sent in binary after it, in order. Errors (FP16/BF16
// as JSON) carry the Python frontend's message. Outputs bound for shared memory are
// copied into their regions here (INTERNAL with Triton's message when too small).
Status RenderInferResponse(const InferenceResponse& response,
                           const std::string& request_id,
                           const OutputEncoding& encoding, std::string* json,
                           std::vector<size_t>* binaries);

}  // namespace httpfe
}  // namespace tritonx
