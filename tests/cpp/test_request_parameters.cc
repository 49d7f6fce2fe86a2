// ApplyRequestParameters: Triton's reserved request parameters.
#include <gtest/gtest.h>

#include "core/request_parameters.h"

namespace tritonx {
namespace {

TEST(RequestParameters, TakesSchedulingParametersOut) {
  InferenceRequest request;
  request.protocol = InferenceRequest::Protocol::kGrpc;  // the empty-final flag
  Parameters given = {{"priority", int64_t{2}},
                      {"timeout", uint64_t{1500}},
                      {"sequence_id", int64_t{42}},
                      {"sequence_start", true},
                      {"sequence_end", true},
                      {"custom", std::string("x")},
                      {"triton_enable_empty_final_response", true}};
  ASSERT_TRUE(ApplyRequestParameters(std::move(given), &request).ok());
  EXPECT_EQ(request.priority, 2u);
  EXPECT_EQ(request.timeout_us, 1500u);
  EXPECT_EQ(request.correlation_id, 42u);
  EXPECT_EQ(request.flags, 3u);
  ASSERT_EQ(request.parameters.size(), 2u);
  EXPECT_EQ(request.parameters[0].first, "custom");
  EXPECT_EQ(std::get<std::string>(request.parameters[0].second), "x");
  EXPECT_EQ(request.parameters[1].first, "triton_enable_empty_final_response");
}

TEST(RequestParameters, ReservedNamesDependOnTheProtocol) {
  // HTTP refuses every triton_ key; gRPC allows triton_enable_empty_final_response
  // and words the refusal of the others its own way.
  for (auto protocol :
       {InferenceRequest::Protocol::kHttp, InferenceRequest::Protocol::kGrpc}) {
    const bool grpc = protocol == InferenceRequest::Protocol::kGrpc;
    {
      InferenceRequest request;
      request.protocol = protocol;
      Parameters given = {{"triton_enable_empty_final_response", true}};
      EXPECT_EQ(ApplyRequestParameters(std::move(given), &request).ok(), grpc);
    }
    InferenceRequest request;
    request.protocol = protocol;
    Parameters given = {{"triton_x", true}};
    EXPECT_EQ(ApplyRequestParameters(std::move(given), &request).message(),
              grpc ? "parameter keys starting with 'triton_' are reserved for Triton "
                     "usage. Only the following keys starting with 'triton_' are "
                     "allowed: triton_enable_empty_final_response"
                   : "parameter keys starting with 'triton_' are reserved for Triton "
                     "usage and should not be specified.");
  }
}

TEST(RequestParameters, StringSequenceId) {
  InferenceRequest request;
  ASSERT_TRUE(
      ApplyRequestParameters({{"sequence_id", std::string("abc")}}, &request).ok());
  EXPECT_EQ(request.correlation_id_str, "abc");
  EXPECT_EQ(request.correlation_id, 0u);
}

TEST(RequestParameters, RejectsReservedNames) {
  // headers and binary_data_output are custom parameters (as in Triton 2.51).
  for (const char* key : {"headers", "binary_data_output"}) {
    InferenceRequest request;
    EXPECT_TRUE(ApplyRequestParameters({{key, true}}, &request).ok()) << key;
    ASSERT_EQ(request.parameters.size(), 1u);
  }
  InferenceRequest request;
  Status status = ApplyRequestParameters({{"triton_anything", true}}, &request);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "parameter keys starting with 'triton_' are reserved for Triton usage and "
            "should not be specified.");
}

TEST(RequestParameters, RejectsBadTypes) {
  InferenceRequest request;
  EXPECT_EQ(ApplyRequestParameters({{"priority", int64_t{-1}}}, &request).message(),
            "invalid value for 'priority', expected value >= 0.");
  EXPECT_EQ(ApplyRequestParameters({{"timeout", 1.5}}, &request).message(),
            "parameter 'timeout' must be a non-negative integer");
  EXPECT_EQ(
      ApplyRequestParameters({{"sequence_start", int64_t{1}}}, &request).message(),
      "parameter 'sequence_start' must be a boolean");
  EXPECT_EQ(ApplyRequestParameters({{"sequence_id", 2.0}}, &request).message(),
            "parameter 'sequence_id' must be an unsigned integer or a string");
}

TEST(RequestParameters, SequenceEndFalseClearsTheFlag) {
  InferenceRequest request;
  request.flags = 3;
  ASSERT_TRUE(ApplyRequestParameters({{"sequence_end", false}}, &request).ok());
  EXPECT_EQ(request.flags, 1u);
}

}  // namespace
}  // namespace tritonx
