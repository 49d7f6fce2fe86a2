// Request templates and channels shared by tritonx-perf's gRPC clients: the
// unary and streaming connections (grpc_connection.cc) and the async clients
// (grpc_async.cc). Stateless functions, except SharedChannel's cache (its own mutex).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "connection.h"
#include "grpc_service.grpc.pb.h"

namespace tritonx::perf {

inline constexpr char kInferMethod[] = "/inference.GRPCInferenceService/ModelInfer";

// The ModelInferRequest of one template: the target's model, version, outputs and
// parameters, the inputs inline (raw contents) or as shared memory references.
inference::ModelInferRequest BuildRequest(const Target& target,
                                          const std::vector<InputData>& inputs);

// Sets the sequence parameters on a request template (kept between requests: the
// next request of any sequence overwrites all three).
const inference::ModelInferRequest& WithSequence(inference::ModelInferRequest* request,
                                                 const SequenceParams& seq);

// A completion queue's deadline is a system_clock time; the load driver's
// deadlines are steady-clock nanoseconds (NowNs). A deadline already past is "now".
std::chrono::system_clock::time_point QueueDeadline(int64_t deadline_ns);

grpc::ByteBuffer Serialize(const google::protobuf::Message& message);

// A channel to the target, shared by a few connections (one HTTP/2 connection each
// few, as tritonclient's cached channels are for perf_analyzer). Thread safe.
std::shared_ptr<grpc::Channel> SharedChannel(const Target& target);

}  // namespace tritonx::perf
