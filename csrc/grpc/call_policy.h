// CallPolicy: the per-call rules tritonserver applies to every gRPC call before
// serving it, configured from the command line:
//   --grpc-restricted-protocol=<group,...>:<key>=<value>  a call of a restricted
//       protocol group must carry the metadata pair `<header>: <value>`, where
//       <header> is "triton-grpc-protocol-<key>", or it fails UNAVAILABLE;
//   --grpc-header-forward-pattern=<regex>  metadata whose key matches (RE2, partial
//       match, case-insensitive unless the pattern turns it off with "(?-i)")
//       becomes a string parameter of the inference request.
// Kept apart from the server so the rules are unit-tested without sockets.
#pragma once

#include <grpcpp/support/status.h>
#include <grpcpp/support/string_ref.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/infer_request.h"
#include "core/status.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace tritonx {
namespace grpcfe {

// Triton's protocol groups, in the order of its documentation.
enum class ProtocolGroup {
  kHealth,
  kMetadata,
  kInference,
  kSharedMemory,
  kModelConfig,
  kModelRepository,
  kStatistics,
  kTrace,
  kLogging,
  kNone,  // a method no group covers (unknown methods); never restricted
};

// "health", "shared-memory", ... -> group; false for an unknown name.
bool ProtocolGroupFromName(const std::string& name, ProtocolGroup* group);

// The group of an RPC by its full path ("/inference.GRPCInferenceService/ModelInfer",
// "/grpc.health.v1.Health/Check"); kNone for anything else.
ProtocolGroup GroupOfMethod(const std::string& method);

// What tritonserver prepends to the key of --grpc-restricted-protocol.
inline constexpr const char kRestrictedHeaderPrefix[] = "triton-grpc-protocol-";

// One --grpc-restricted-protocol group: `header` is the full metadata key (prefix
// included), matched exactly, as is `value`.
struct RestrictedProtocol {
  std::string group;
  std::string header;
  std::string value;
};

using ClientMetadata = std::multimap<grpc::string_ref, grpc::string_ref>;

// Thread safety: immutable once created; any number of gRPC threads may use one
// instance at once. Owned by the GrpcServer (one per server).
class CallPolicy {
 public:
  // Fails with INVALID_ARG on an unknown group, a group named twice, or a
  // forward pattern RE2 cannot compile. An empty pattern forwards nothing.
  static Status Create(const std::vector<RestrictedProtocol>& restricted,
                       const std::string& forward_pattern,
                       std::unique_ptr<CallPolicy>* out);
  ~CallPolicy();
  CallPolicy(const CallPolicy&) = delete;
  CallPolicy& operator=(const CallPolicy&) = delete;

  bool restricted(ProtocolGroup group) const {
    return group != ProtocolGroup::kNone && rules_[static_cast<size_t>(group)].active;
  }

  // OK, or UNAVAILABLE with Triton's message when `group` is restricted and the
  // call lacks the expected metadata pair.
  grpc::Status Admit(ProtocolGroup group, const ClientMetadata& metadata) const;

  bool forwards_headers() const { return forward_ != nullptr; }

  // Appends every metadata entry whose key matches the forward pattern to
  // `params` as a string parameter (after the request's own parameters, so a
  // header wins over a parameter of the same name, as in Triton). Like Triton,
  // a value is cut at its first NUL byte.
  void ForwardHeaders(const ClientMetadata& metadata, Parameters* params) const;

 private:
  struct Rule {
    bool active = false;
    std::string header;
    std::string value;
  };
  CallPolicy() = default;

  std::array<Rule, static_cast<size_t>(ProtocolGroup::kNone)> rules_;
  std::unique_ptr<re2::RE2> forward_;
};

// The W3C trace context metadata (traceparent, tracestate) of a call, into its
// request.
void ReadTraceContext(const ClientMetadata& metadata, InferenceRequest* request);

}  // namespace grpcfe
}  // namespace tritonx
