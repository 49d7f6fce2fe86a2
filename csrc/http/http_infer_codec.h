// KServe v2 infer bodies over HTTP, in C++: JSON (RapidJSON) and the binary tensor
// extension in, JSON and binary out. The decoded JSON is checked by the walk both
// HTTP engines share (core/infer_json.h, Triton's order and messages) and built by
// the core's RequestBuilder; the tensors themselves (names, shapes, sizes against
// the model) are left to the core's ValidateRequest, as for gRPC.
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

// `Inference-Header-Content-Length`: tritonx::ParseHeaderLength (core/infer_json.h).

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
// response.outputs) of the non-empty outputs sent in binary after it, in order (an
// empty one is announced in the JSON only). Errors (FP16/BF16
// as JSON) carry the Python frontend's message. Outputs bound for shared memory are
// copied into their regions here (INTERNAL with Triton's message when too small).
Status RenderInferResponse(const InferenceResponse& response,
                           const std::string& request_id,
                           const OutputEncoding& encoding, std::string* json,
                           std::vector<size_t>* binaries);

}  // namespace httpfe
}  // namespace tritonx
