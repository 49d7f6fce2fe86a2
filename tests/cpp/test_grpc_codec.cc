// gRPC message <-> core request/response conversions (csrc/grpc/infer_codec).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "infer_codec.h"

namespace tritonx::grpcfe {
namespace {

using inference::ModelInferRequest;
using inference::ModelInferResponse;

ModelSpec OneInputSpec() {
  ModelSpec spec;
  spec.name = "m";
  spec.inputs.push_back({"IN", DataType::kFp32, {-1}, false, false, {}, {}});
  spec.outputs.push_back({"OUT", DataType::kFp32, {-1}, false, false, {}, {}});
  return spec;
}

TEST(GrpcCodec, RawInputsAreNotCopied) {
  auto msg = std::make_shared<ModelInferRequest>();
  msg->set_model_name("m");
  msg->set_id("r1");
  auto* in = msg->add_inputs();
  in->set_name("IN");
  in->set_datatype("FP32");
  in->add_shape(2);
  msg->add_raw_input_contents(std::string(8, '\x01'));
  InferenceRequest request;
  ASSERT_TRUE(BuildInferenceRequest(*msg, msg, nullptr, &request).ok());
  ASSERT_EQ(request.inputs.size(), 1u);
  EXPECT_EQ(request.id, "r1");
  EXPECT_EQ(request.inputs[0].data, msg->raw_input_contents(0).data());
  EXPECT_EQ(request.inputs[0].byte_size, 8u);
  EXPECT_EQ(request.inputs[0].owner.get(), msg.get());
  EXPECT_EQ(request.inputs[0].shape, Shape({2}));
}

TEST(GrpcCodec, TypedContentsBecomeRawBytes) {
  ModelInferRequest msg;
  auto* i8 = msg.add_inputs();
  i8->set_name("A");
  i8->set_datatype("INT8");
  i8->add_shape(2);
  i8->mutable_contents()->add_int_contents(-1);
  i8->mutable_contents()->add_int_contents(0x1234);  // only the low byte is kept
  auto* b = msg.add_inputs();
  b->set_name("B");
  b->set_datatype("BOOL");
  b->add_shape(2);
  b->mutable_contents()->add_bool_contents(true);
  b->mutable_contents()->add_bool_contents(false);
  auto* s = msg.add_inputs();
  s->set_name("S");
  s->set_datatype("BYTES");
  s->add_shape(2);
  s->mutable_contents()->add_bytes_contents("ab");
  s->mutable_contents()->add_bytes_contents("");
  InferenceRequest request;
  ASSERT_TRUE(BuildInferenceRequest(msg, nullptr, nullptr, &request).ok());
  ASSERT_EQ(request.inputs.size(), 3u);
  EXPECT_EQ(std::string(request.inputs[0].data, request.inputs[0].byte_size),
            std::string("\xff\x34", 2));
  EXPECT_EQ(std::string(request.inputs[1].data, request.inputs[1].byte_size),
            std::string("\x01\x00", 2));
  EXPECT_EQ(std::string(request.inputs[2].data, request.inputs[2].byte_size),
            std::string("\x02\x00\x00\x00"
                        "ab"
                        "\x00\x00\x00\x00",
                        10));
  EXPECT_NE(request.inputs[0].owner, nullptr);
}

TEST(GrpcCodec, RawAndTypedTogetherIsRejected) {
  ModelInferRequest msg;
  msg.set_model_name("m");
  auto* in = msg.add_inputs();
  in->set_name("IN");
  in->set_datatype("FP32");
  in->mutable_contents()->add_fp32_contents(1.0f);
  msg.add_raw_input_contents(std::string(4, '\0'));
  InferenceRequest request;
  Status status = BuildInferenceRequest(msg, nullptr, nullptr, &request);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "contents field must not be specified when using raw_input_contents for "
            "'IN' for model 'm'");
}

TEST(GrpcCodec, MissingDataAndBadDatatype) {
  ModelSpec spec = OneInputSpec();
  ModelInferRequest msg;
  msg.set_model_name("m");
  auto* in = msg.add_inputs();
  in->set_name("IN");
  in->set_datatype("FP16");
  InferenceRequest request;
  Status status = BuildInferenceRequest(msg, nullptr, &spec, &request);
  EXPECT_EQ(status.message(),
            "unable to find data for input tensor 'IN' for model 'm' in request.");
  // An unknown datatype reaches the core's validation, which words it (Triton's
  // gRPC frontend passes it on too).
  in->set_datatype("FLOAT");
  msg.add_raw_input_contents(std::string(4, '\0'));
  InferenceRequest request2;
  ASSERT_TRUE(BuildInferenceRequest(msg, nullptr, &spec, &request2).ok());
  EXPECT_EQ(request2.inputs[0].dtype, DataType::kInvalid);
}

TEST(GrpcCodec, ParametersGoThroughTheCoreRules) {
  ModelInferRequest msg;
  (*msg.mutable_parameters())["priority"].set_uint64_param(2);
  (*msg.mutable_parameters())["custom"].set_string_param("x");
  InferenceRequest request;
  ASSERT_TRUE(BuildInferenceRequest(msg, nullptr, nullptr, &request).ok());
  EXPECT_EQ(request.priority, 2u);
  ASSERT_EQ(request.parameters.size(), 1u);
  EXPECT_EQ(std::get<std::string>(request.parameters[0].second), "x");

  ModelInferRequest unset;
  (*unset.mutable_parameters())["p"];
  InferenceRequest request2;
  EXPECT_EQ(BuildInferenceRequest(unset, nullptr, nullptr, &request2).code(),
            StatusCode::kInvalidArg);
}

TEST(GrpcCodec, ResponseHasOneRawEntryPerOutput) {
  InferenceResponse response;
  response.model_name = "m";
  response.model_version = 3;
  const float values[2] = {1.0f, 2.0f};
  Tensor full{"A", DataType::kFp32, {1, 2}, reinterpret_cast<const char*>(values),
              8,   nullptr};
  Tensor empty{"B", DataType::kBytes, {1, 0}, nullptr, 0, nullptr};
  response.outputs = {full, empty};
  response.parameters.emplace_back("triton_final_response", ParameterValue(true));
  ModelInferResponse msg;
  BuildInferResponse(response, "rid", &msg);
  EXPECT_EQ(msg.model_version(), "3");
  EXPECT_EQ(msg.id(), "rid");
  ASSERT_EQ(msg.outputs_size(), 2);
  ASSERT_EQ(msg.raw_output_contents_size(), 2);
  EXPECT_EQ(msg.outputs(1).datatype(), "BYTES");
  EXPECT_EQ(msg.raw_output_contents(0).size(), 8u);
  EXPECT_TRUE(msg.raw_output_contents(1).empty());
  EXPECT_TRUE(msg.parameters().at("triton_final_response").bool_param());
}

// A response with a small, a large (zero-copy) and an empty output.
struct LargeResponseCase {
  const std::string large = std::string(kZeroCopyOutputBytes + 3, '\x07');
  const float small[2] = {1.0f, 2.0f};
  std::shared_ptr<InferenceResponse> response = std::make_shared<InferenceResponse>();

  LargeResponseCase() {
    response->model_name = "m";
    response->model_version = 1;
    response->outputs = {Tensor{"SMALL",
                                DataType::kFp32,
                                {2},
                                reinterpret_cast<const char*>(small),
                                8,
                                nullptr},
                         Tensor{"LARGE",
                                DataType::kUint8,
                                {static_cast<int64_t>(large.size())},
                                large.data(),
                                large.size(),
                                nullptr},
                         Tensor{"EMPTY", DataType::kBytes, {0}, nullptr, 0, nullptr}};
    response->parameters.emplace_back("p", ParameterValue(int64_t{5}));
  }

  // `wire`'s bytes; checks that the large output went out from the tensor itself,
  // and that the bytes hold the response (and so its tensors) until they are gone.
  std::string TakeBytes(grpc::ByteBuffer* wire,
                        const std::weak_ptr<InferenceResponse>& watch) const {
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(wire->Dump(&slices).ok());
    std::string bytes;
    bool borrowed = false;
    for (const grpc::Slice& slice : slices) {
      borrowed =
          borrowed || reinterpret_cast<const char*>(slice.begin()) == large.data();
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
    EXPECT_TRUE(borrowed);
    EXPECT_FALSE(watch.expired());
    slices.clear();
    wire->Clear();
    EXPECT_TRUE(watch.expired());
    return bytes;
  }
};

TEST(GrpcCodec, SerializedResponseParsesAsTheBuiltMessageWithoutCopyingLargeOutputs) {
  LargeResponseCase c;
  ModelInferResponse built;
  ASSERT_TRUE(BuildInferResponse(*c.response, "rid", &built).ok());

  std::weak_ptr<InferenceResponse> watch = c.response;
  ModelInferResponse scratch;
  grpc::ByteBuffer wire;
  ASSERT_TRUE(
      SerializeInferResponse(std::move(c.response), "rid", nullptr, &scratch, &wire)
          .ok());
  ModelInferResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(c.TakeBytes(&wire, watch)));
  EXPECT_EQ(parsed.SerializeAsString(), built.SerializeAsString());
  ASSERT_EQ(parsed.raw_output_contents_size(), 3);
  EXPECT_EQ(parsed.raw_output_contents(1), c.large);
}

TEST(GrpcCodec, SerializedStreamResponseWrapsTheBuiltMessageWithItsFinalFlag) {
  for (const bool final : {false, true}) {
    LargeResponseCase c;
    inference::ModelStreamInferResponse built;
    ASSERT_TRUE(
        BuildInferResponse(*c.response, "rid", built.mutable_infer_response()).ok());
    (*built.mutable_infer_response()->mutable_parameters())["triton_final_response"]
        .set_bool_param(final);

    std::weak_ptr<InferenceResponse> watch = c.response;
    ModelInferResponse scratch;
    grpc::ByteBuffer wire;
    ASSERT_TRUE(SerializeStreamInferResponse(std::move(c.response), "rid", nullptr,
                                             final, &scratch, &wire)
                    .ok());
    inference::ModelStreamInferResponse parsed;
    ASSERT_TRUE(parsed.ParseFromString(c.TakeBytes(&wire, watch)));
    EXPECT_TRUE(parsed.error_message().empty());
    // (Map order is not part of the wire form: compare field by field.)
    const ModelInferResponse& got = parsed.infer_response();
    const ModelInferResponse& want = built.infer_response();
    EXPECT_EQ(got.parameters().at("triton_final_response").bool_param(), final);
    EXPECT_EQ(got.parameters().at("p").int64_param(), 5);
    EXPECT_EQ(got.parameters_size(), 2);
    EXPECT_EQ(got.id(), want.id());
    EXPECT_EQ(got.model_name(), want.model_name());
    ASSERT_EQ(got.outputs_size(), 3);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(got.outputs(i).SerializeAsString(),
                want.outputs(i).SerializeAsString());
      EXPECT_EQ(got.raw_output_contents(i), want.raw_output_contents(i));
    }
  }
}

TEST(GrpcCodec, StatusMapping) {
  EXPECT_EQ(ToGrpcStatus(Status(StatusCode::kUnsupported, "x")).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(ToGrpcStatus(Status(StatusCode::kInvalidArg, "x")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(ToGrpcStatus(Status::Ok()).ok());
  EXPECT_EQ(ToGrpcStatus(Status(StatusCode::kNotFound, "x")).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpcStatus(Status(StatusCode::kCancelled, "x")).error_code(),
            grpc::StatusCode::CANCELLED);
}

TEST(GrpcCodec, ControlRequestsMustParse) {
  // Garbage: a length-delimited field that runs past the end of the message.
  const std::string garbage("\x0a\xff\xff\xff\x0f garbage", 14);
  for (const char* rpc : {"ServerLive", "ModelConfig", "RepositoryModelLoad",
                          "CudaSharedMemoryRegister", "TraceSetting", "LogSettings"}) {
    const std::string method = std::string("/inference.GRPCInferenceService/") + rpc;
    EXPECT_FALSE(ControlRequestParses(method, garbage)) << method;
    EXPECT_TRUE(ControlRequestParses(method, "")) << method;
  }
  EXPECT_FALSE(ControlRequestParses("/grpc.health.v1.Health/Check", garbage));
  inference::ModelConfigRequest request;
  request.set_name("m");
  EXPECT_TRUE(ControlRequestParses("/inference.GRPCInferenceService/ModelConfig",
                                   request.SerializeAsString()));
  // Methods it does not know are left to whoever answers them.
  EXPECT_TRUE(ControlRequestParses("/other.Service/Method", garbage));
  EXPECT_STREQ(kParseFailure, "Unable to parse request");
}

}  // namespace
}  // namespace tritonx::grpcfe
