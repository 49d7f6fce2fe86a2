// Restricted protocol groups and header forwarding (csrc/grpc/call_policy).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "call_policy.h"

namespace tritonx::grpcfe {
namespace {

// Metadata as grpc hands it to the server: string_refs into strings that
// outlive the map.
class Metadata {
 public:
  Metadata& Add(std::string key, std::string value) {
    strings_.push_back(std::make_unique<std::string>(std::move(key)));
    const std::string& k = *strings_.back();
    strings_.push_back(std::make_unique<std::string>(std::move(value)));
    const std::string& v = *strings_.back();
    map_.emplace(grpc::string_ref(k), grpc::string_ref(v));
    return *this;
  }
  const ClientMetadata& map() const { return map_; }

 private:
  std::vector<std::unique_ptr<std::string>> strings_;
  ClientMetadata map_;
};

std::unique_ptr<CallPolicy> MakePolicy(
    const std::vector<RestrictedProtocol>& restricted,
    const std::string& pattern = "") {
  std::unique_ptr<CallPolicy> policy;
  Status status = CallPolicy::Create(restricted, pattern, &policy);
  EXPECT_TRUE(status.ok()) << status.message();
  return policy;
}

TEST(GrpcPolicy, MethodsBelongToTritonsGroups) {
  const std::string service = "/inference.GRPCInferenceService/";
  EXPECT_EQ(GroupOfMethod(service + "ServerLive"), ProtocolGroup::kHealth);
  EXPECT_EQ(GroupOfMethod(service + "ModelReady"), ProtocolGroup::kHealth);
  EXPECT_EQ(GroupOfMethod("/grpc.health.v1.Health/Check"), ProtocolGroup::kHealth);
  EXPECT_EQ(GroupOfMethod(service + "ModelMetadata"), ProtocolGroup::kMetadata);
  EXPECT_EQ(GroupOfMethod(service + "ModelInfer"), ProtocolGroup::kInference);
  EXPECT_EQ(GroupOfMethod(service + "ModelStreamInfer"), ProtocolGroup::kInference);
  EXPECT_EQ(GroupOfMethod(service + "CudaSharedMemoryRegister"),
            ProtocolGroup::kSharedMemory);
  EXPECT_EQ(GroupOfMethod(service + "ModelConfig"), ProtocolGroup::kModelConfig);
  EXPECT_EQ(GroupOfMethod(service + "RepositoryModelUnload"),
            ProtocolGroup::kModelRepository);
  EXPECT_EQ(GroupOfMethod(service + "ModelStatistics"), ProtocolGroup::kStatistics);
  EXPECT_EQ(GroupOfMethod(service + "TraceSetting"), ProtocolGroup::kTrace);
  EXPECT_EQ(GroupOfMethod(service + "LogSettings"), ProtocolGroup::kLogging);
  EXPECT_EQ(GroupOfMethod(service + "ModelInferX"), ProtocolGroup::kNone);
  EXPECT_EQ(GroupOfMethod("/other.Service/ServerLive"), ProtocolGroup::kNone);
}

TEST(GrpcPolicy, RestrictedGroupNeedsTheExactPair) {
  auto policy = MakePolicy({{"inference", "triton-grpc-protocol-key", "secret"}});
  EXPECT_TRUE(policy->restricted(ProtocolGroup::kInference));
  EXPECT_FALSE(policy->restricted(ProtocolGroup::kHealth));
  EXPECT_FALSE(policy->restricted(ProtocolGroup::kNone));

  grpc::Status refused = policy->Admit(ProtocolGroup::kInference, Metadata().map());
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(refused.error_message(),
            "This protocol is restricted, expecting header 'triton-grpc-protocol-key'");

  Metadata wrong;
  wrong.Add("triton-grpc-protocol-key", "Secret");
  EXPECT_FALSE(policy->Admit(ProtocolGroup::kInference, wrong.map()).ok());

  Metadata right;
  right.Add("other", "x").Add("triton-grpc-protocol-key", "secret");
  EXPECT_TRUE(policy->Admit(ProtocolGroup::kInference, right.map()).ok());
  EXPECT_TRUE(policy->Admit(ProtocolGroup::kHealth, Metadata().map()).ok());
}

TEST(GrpcPolicy, BadConfigurationsAreRefused) {
  std::unique_ptr<CallPolicy> policy;
  Status status = CallPolicy::Create({{"inferenc", "h", "v"}}, "", &policy);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(), "unknown restricted protocol 'inferenc'");

  status =
      CallPolicy::Create({{"health", "a", "1"}, {"health", "b", "2"}}, "", &policy);
  EXPECT_EQ(
      status.message(),
      "restricted protocol 'health' can not be specified in multiple config groups");

  status = CallPolicy::Create({}, "(", &policy);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message().rfind("invalid --grpc-header-forward-pattern '(': ", 0),
            0u);
}

TEST(GrpcPolicy, ForwardsMatchingHeadersCaseInsensitively) {
  auto policy = MakePolicy({}, "MY_HEADER.*");
  ASSERT_TRUE(policy->forwards_headers());
  Metadata metadata;
  metadata.Add("my_header_1", "v1").Add("header_2", "v2").Add("x-my_header", "v3");
  Parameters params;
  params.emplace_back("custom", ParameterValue(int64_t{7}));
  policy->ForwardHeaders(metadata.map(), &params);
  ASSERT_EQ(params.size(), 3u);
  // A partial match, like RE2::PartialMatch in tritonserver.
  EXPECT_EQ(params[0].first, "custom");
  EXPECT_EQ(params[1].first, "my_header_1");
  EXPECT_EQ(std::get<std::string>(params[1].second), "v1");
  EXPECT_EQ(params[2].first, "x-my_header");
}

TEST(GrpcPolicy, CaseSensitivePatternAndNulTruncation) {
  auto sensitive = MakePolicy({}, "(?-i)MY_HEADER.*");
  Metadata metadata;
  metadata.Add("my_header_1", "v1");
  Parameters params;
  sensitive->ForwardHeaders(metadata.map(), &params);
  EXPECT_TRUE(params.empty());

  auto all = MakePolicy({}, "^bin");
  Metadata binary;
  binary.Add("bin-bin", std::string("ab\0cd", 5));
  all->ForwardHeaders(binary.map(), &params);
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(std::get<std::string>(params[0].second), "ab");

  EXPECT_FALSE(MakePolicy({})->forwards_headers());
}

}  // namespace
}  // namespace tritonx::grpcfe
