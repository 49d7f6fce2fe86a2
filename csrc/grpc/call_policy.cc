#include "call_policy.h"

#include <re2/re2.h>

#include <cstring>
#include <utility>

namespace tritonx {
namespace grpcfe {
namespace {

struct GroupName {
  const char* name;
  ProtocolGroup group;
};

constexpr GroupName kGroupNames[] = {
    {"health", ProtocolGroup::kHealth},
    {"metadata", ProtocolGroup::kMetadata},
    {"inference", ProtocolGroup::kInference},
    {"shared-memory", ProtocolGroup::kSharedMemory},
    {"model-config", ProtocolGroup::kModelConfig},
    {"model-repository", ProtocolGroup::kModelRepository},
    {"statistics", ProtocolGroup::kStatistics},
    {"trace", ProtocolGroup::kTrace},
    {"logging", ProtocolGroup::kLogging},
};

// Which group each RPC belongs to, as checked against tritonserver 2.51.
struct MethodGroup {
  const char* rpc;
  ProtocolGroup group;
};

constexpr MethodGroup kInferenceService[] = {
    {"ServerLive", ProtocolGroup::kHealth},
    {"ServerReady", ProtocolGroup::kHealth},
    {"ModelReady", ProtocolGroup::kHealth},
    {"ServerMetadata", ProtocolGroup::kMetadata},
    {"ModelMetadata", ProtocolGroup::kMetadata},
    {"ModelInfer", ProtocolGroup::kInference},
    {"ModelStreamInfer", ProtocolGroup::kInference},
    {"ModelConfig", ProtocolGroup::kModelConfig},
    {"ModelStatistics", ProtocolGroup::kStatistics},
    {"RepositoryIndex", ProtocolGroup::kModelRepository},
    {"RepositoryModelLoad", ProtocolGroup::kModelRepository},
    {"RepositoryModelUnload", ProtocolGroup::kModelRepository},
    {"SystemSharedMemoryStatus", ProtocolGroup::kSharedMemory},
    {"SystemSharedMemoryRegister", ProtocolGroup::kSharedMemory},
    {"SystemSharedMemoryUnregister", ProtocolGroup::kSharedMemory},
    {"CudaSharedMemoryStatus", ProtocolGroup::kSharedMemory},
    {"CudaSharedMemoryRegister", ProtocolGroup::kSharedMemory},
    {"CudaSharedMemoryUnregister", ProtocolGroup::kSharedMemory},
    {"TraceSetting", ProtocolGroup::kTrace},
    {"LogSettings", ProtocolGroup::kLogging},
};

constexpr char kServicePrefix[] = "/inference.GRPCInferenceService/";
constexpr char kHealthCheck[] = "/grpc.health.v1.Health/Check";

}  // namespace

bool ProtocolGroupFromName(const std::string& name, ProtocolGroup* group) {
  for (const auto& entry : kGroupNames) {
    if (name == entry.name) {
      *group = entry.group;
      return true;
    }
  }
  return false;
}

ProtocolGroup GroupOfMethod(const std::string& method) {
  if (method == kHealthCheck) return ProtocolGroup::kHealth;
  const size_t prefix_len = sizeof(kServicePrefix) - 1;
  if (method.compare(0, prefix_len, kServicePrefix) != 0) return ProtocolGroup::kNone;
  for (const auto& entry : kInferenceService) {
    if (method.compare(prefix_len, std::string::npos, entry.rpc) == 0)
      return entry.group;
  }
  return ProtocolGroup::kNone;
}

Status CallPolicy::Create(const std::vector<RestrictedProtocol>& restricted,
                          const std::string& forward_pattern,
                          std::unique_ptr<CallPolicy>* out) {
  std::unique_ptr<CallPolicy> policy(new CallPolicy());
  for (const auto& entry : restricted) {
    ProtocolGroup group;
    if (!ProtocolGroupFromName(entry.group, &group)) {
      return Status(StatusCode::kInvalidArg,
                    "unknown restricted protocol '" + entry.group + "'");
    }
    Rule& rule = policy->rules_[static_cast<size_t>(group)];
    if (rule.active) {
      return Status(StatusCode::kInvalidArg,
                    "restricted protocol '" + entry.group +
                        "' can not be specified in multiple config groups");
    }
    rule.active = true;
    rule.header = entry.header;
    rule.value = entry.value;
  }
  if (!forward_pattern.empty()) {
    // tritonserver matches header names case-insensitively unless the pattern
    // itself says otherwise; "(?-i)" at its start then overrides this prefix.
    RE2::Options options;
    options.set_log_errors(false);
    auto regex = std::make_unique<re2::RE2>("(?i)" + forward_pattern, options);
    if (!regex->ok()) {
      return Status(StatusCode::kInvalidArg, "invalid --grpc-header-forward-pattern '" +
                                                 forward_pattern +
                                                 "': " + regex->error());
    }
    policy->forward_ = std::move(regex);
  }
  *out = std::move(policy);
  return Status::Ok();
}

CallPolicy::~CallPolicy() = default;

grpc::Status CallPolicy::Admit(ProtocolGroup group,
                               const ClientMetadata& metadata) const {
  if (!restricted(group)) return grpc::Status::OK;
  const Rule& rule = rules_[static_cast<size_t>(group)];
  auto it = metadata.find(grpc::string_ref(rule.header));
  if (it != metadata.end() && it->second == grpc::string_ref(rule.value)) {
    return grpc::Status::OK;
  }
  return grpc::Status(
      grpc::StatusCode::UNAVAILABLE,
      "This protocol is restricted, expecting header '" + rule.header + "'");
}

void CallPolicy::ForwardHeaders(const ClientMetadata& metadata,
                                Parameters* params) const {
  if (forward_ == nullptr) return;
  for (const auto& [key, value] : metadata) {
    re2::StringPiece name(key.data(), key.size());
    if (!RE2::PartialMatch(name, *forward_)) continue;
    const void* nul = std::memchr(value.data(), '\0', value.size());
    const size_t length =
        nul ? static_cast<size_t>(static_cast<const char*>(nul) - value.data())
            : value.size();
    params->emplace_back(std::string(key.data(), key.size()),
                         ParameterValue(std::string(value.data(), length)));
  }
}

void ReadTraceContext(const ClientMetadata& metadata, InferenceRequest* request) {
  // gRPC keys metadata in lower case, as the W3C names are.
  auto parent = metadata.find("traceparent");
  if (parent != metadata.end()) {
    request->traceparent.assign(parent->second.data(), parent->second.size());
  }
  auto state = metadata.find("tracestate");
  if (state != metadata.end()) {
    request->tracestate.assign(state->second.data(), state->second.size());
  }
}

}  // namespace grpcfe
}  // namespace tritonx
