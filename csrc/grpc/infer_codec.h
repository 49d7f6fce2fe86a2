// Conversions between the KServe gRPC messages and the core's request/response
// types. Kept apart from the server so they can be unit-tested without sockets.
#pragma once

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/infer_request.h"
#include "core/model_spec.h"
#include "core/shared_memory_registry.h"
#include "core/status.h"
#include "grpc_service.pb.h"

namespace tritonx {
namespace grpcfe {

// Triton's status message (with INTERNAL) for a request message that does not parse.
inline constexpr const char kParseFailure[] = "Unable to parse request";

// False when `request` does not parse as the request message of `method` (a
// control-plane RPC of inference.GRPCInferenceService or grpc.health.v1.Health);
// true for a message that parses, and for methods it does not know (whatever
// answers those decides).
bool ControlRequestParses(const std::string& method, const std::string& request);

// Maps a core status onto the gRPC code Triton uses for it (core/status.h's table).
grpc::Status ToGrpcStatus(const Status& status);

// Fills `out` from a ModelInferRequest. Raw input tensors point into `msg`
// without copying, so `owner` must keep `msg` alive; typed `contents` are
// converted into buffers the tensors own. Request parameters go through the
// core's ApplyRequestParameters so gRPC and HTTP treat them alike. `spec`
// (may be null) only serves to word errors the way Triton does. Tensors with
// `shared_memory_region` parameters are read from (inputs, zero copy) or bound
// to (outputs, into `*shm_outputs`) a region of `shm`; null `shm`: refused.
Status BuildInferenceRequest(const inference::ModelInferRequest& msg,
                             const std::shared_ptr<const void>& owner,
                             const ModelSpec* spec, InferenceRequest* out,
                             const SharedMemoryRegistry* shm = nullptr,
                             ShmOutputs* shm_outputs = nullptr);
// The same with the raw input contents given apart from the message (they may
// have been split off it: received_request.h); they must live as long as `owner`.
Status BuildInferenceRequest(const inference::ModelInferRequest& msg,
                             const std::vector<std::string_view>& raw_inputs,
                             const std::shared_ptr<const void>& owner,
                             const ModelSpec* spec, InferenceRequest* out,
                             const SharedMemoryRegistry* shm = nullptr,
                             ShmOutputs* shm_outputs = nullptr);

// Serializes a successful response. Every output gets exactly one
// raw_output_contents entry (possibly empty), in the order of `outputs`,
// because the C++ client indexes them positionally. `request_id` is used when
// the core left the response's id empty. Outputs in `shm_outputs` are copied into
// their regions and get an empty entry (Triton's INTERNAL error when one does
// not fit).
Status BuildInferResponse(const InferenceResponse& response,
                          const std::string& request_id,
                          inference::ModelInferResponse* msg,
                          const ShmOutputs* shm_outputs = nullptr);

// BuildInferResponse's message as gRPC's wire bytes, without copying large outputs:
// the message is serialized without its raw_output_contents, which follow it as
// fields of their own (a parser appends a repeated field's elements in wire order,
// wherever they stand), and an output of kZeroCopyOutputBytes or more goes out as a
// slice over the tensor's own bytes that holds `response` until gRPC has sent it
// (the HTTP engine writes large outputs the same way). Parsing `out` gives
// BuildInferResponse's message. `scratch` is cleared and used for the rest.
inline constexpr size_t kZeroCopyOutputBytes = 64 * 1024;
Status SerializeInferResponse(std::shared_ptr<const InferenceResponse> response,
                              const std::string& request_id,
                              const ShmOutputs* shm_outputs,
                              inference::ModelInferResponse* scratch,
                              grpc::ByteBuffer* out);

// The same for a ModelStreamInfer answer: a ModelStreamInferResponse whose
// infer_response is SerializeInferResponse's message with the
// `triton_final_response` parameter set to `final` (every stream response says
// whether it is its request's last; Triton does so for non-decoupled models too).
Status SerializeStreamInferResponse(std::shared_ptr<const InferenceResponse> response,
                                    const std::string& request_id,
                                    const ShmOutputs* shm_outputs, bool final,
                                    inference::ModelInferResponse* scratch,
                                    grpc::ByteBuffer* out);

}  // namespace grpcfe
}  // namespace tritonx
