// Conversions between the KServe gRPC messages and the core's request/response
// types. Kept apart from the server so they can be unit-tested without sockets.
#pragma once

#include <grpcpp/support/status.h>

#include <memory>
#include <string>

#include "core/infer_request.h"
#include "core/model_spec.h"
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

// Maps a core status onto the gRPC code Triton uses for it.
grpc::Status ToGrpcStatus(const Status& status);

// Maps a gRPC status code name ("INVALID_ARGUMENT", ...) onto the code; unknown
// names become INTERNAL.
grpc::StatusCode GrpcCodeFromName(const std::string& name);

// Fills `out` from a ModelInferRequest. Raw input tensors point into `msg`
// without copying, so `owner` must keep `msg` alive; typed `contents` are
// converted into buffers the tensors own. Request parameters go through the
// core's ApplyRequestParameters so gRPC and HTTP treat them alike. `spec`
// (may be null) only serves to word errors the way Triton does.
Status BuildInferenceRequest(const inference::ModelInferRequest& msg,
                             const std::shared_ptr<const void>& owner,
                             const ModelSpec* spec, InferenceRequest* out);

// Serializes a successful response. Every output gets exactly one
// raw_output_contents entry (possibly empty), in the order of `outputs`,
// because the C++ client indexes them positionally. `request_id` is used when
// the core left the response's id empty.
void BuildInferResponse(const InferenceResponse& response,
                        const std::string& request_id,
                        inference::ModelInferResponse* msg);

}  // namespace grpcfe
}  // namespace tritonx
