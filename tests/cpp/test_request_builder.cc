// The one request builder (csrc/core/request_builder): the rules every codec shares.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "core/request_builder.h"

namespace tritonx {
namespace {

ModelSpec Spec(DataType dtype, Shape dims, int max_batch_size = 0) {
  ModelSpec spec;
  spec.name = "m";
  spec.max_batch_size = max_batch_size;
  spec.inputs.push_back({"IN", dtype, std::move(dims), false, false, {}, {}});
  spec.outputs.push_back({"OUT", dtype, {-1}, false, false, {}, {}});
  return spec;
}

InputDescription Json(std::string datatype, Shape shape, std::vector<JsonScalar> leaves,
                      std::string name = "IN") {
  static std::vector<std::string> names;  // datatype views outlive each call
  names.push_back(std::move(datatype));
  InputDescription input;
  input.name = std::move(name);
  input.datatype = names.back();
  input.shape = std::move(shape);
  input.source = InputDescription::Source::kJson;
  input.json = std::move(leaves);
  return input;
}

JsonScalar Int(int64_t v) {
  JsonScalar s;
  s.type = JsonScalar::Type::kInt;
  s.i = v;
  return s;
}

JsonScalar Text(std::string_view v) {
  JsonScalar s;
  s.type = JsonScalar::Type::kString;
  s.text = v;
  return s;
}

TEST(RequestBuilder, UnknownDatatypeRefusedWhereTritonRefusesIt) {
  InferenceRequest http, grpc, local;
  InputDescription in = Json("FLOAT", {1}, {Int(1)});
  EXPECT_EQ(
      RequestBuilder(&http, WireProtocol::kHttp, "m", nullptr).AddInput(in).message(),
      "invalid datatype for input IN");
  EXPECT_EQ(
      RequestBuilder(&local, WireProtocol::kNone, "m", nullptr).AddInput(in).message(),
      "invalid datatype 'FLOAT' for input 'IN'");
  // Bytes (gRPC; HTTP binary data): left to the core's validation, as in Triton.
  InputDescription raw;
  raw.name = "IN";
  raw.datatype = "FLOAT";
  raw.shape = {1};
  raw.data = "\0\0\0\0";
  raw.byte_size = 4;
  ASSERT_TRUE(
      RequestBuilder(&grpc, WireProtocol::kGrpc, "m", nullptr).AddInput(raw).ok());
  EXPECT_EQ(grpc.inputs[0].dtype, DataType::kInvalid);
  InferenceRequest http_binary;
  ASSERT_TRUE(RequestBuilder(&http_binary, WireProtocol::kHttp, "m", nullptr)
                  .AddInput(raw)
                  .ok());
}

TEST(RequestBuilder, JsonValuesBecomeWireBytes) {
  InferenceRequest request;
  RequestBuilder builder(&request, WireProtocol::kHttp, "m", nullptr);
  ASSERT_TRUE(builder.AddInput(Json("INT16", {2}, {Int(-1), Int(0x10002)})).ok());
  const int16_t* values = reinterpret_cast<const int16_t*>(request.inputs[0].data);
  EXPECT_EQ(values[0], -1);
  EXPECT_EQ(values[1], 2);  // wraps like Triton's cast
  InputDescription bytes = Json("BYTES", {2}, {Text("ab"), Text("")}, "B");
  ASSERT_TRUE(builder.AddInput(std::move(bytes)).ok());
  EXPECT_EQ(std::string(request.inputs[1].data, request.inputs[1].byte_size),
            std::string("\x02\0\0\0ab\0\0\0\0", 10));
}

TEST(RequestBuilder, JsonChecksInTritonsOrder) {
  InferenceRequest request;
  RequestBuilder builder(&request, WireProtocol::kHttp, "m", nullptr);
  // The kind of every element before the count.
  Status status = builder.AddInput(Json("UINT8", {5}, {Text("x")}));
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_EQ(status.message(),
            "Unable to parse 'data': attempt to access JSON non-unsigned-integer as "
            "unsigned-integer");
  status = builder.AddInput(Json("INT32", {5}, {Int(1)}));
  EXPECT_EQ(status.message(),
            "Unable to parse 'data': Shape does not match true shape of 'data' field");
  status = builder.AddInput(Json("UINT8", {1}, {Int(-1)}));
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  // ... but an element past the count is refused before its kind is looked at.
  status = builder.AddInput(Json("FP32", {2}, {Int(1), Int(2), Text("x")}));
  EXPECT_EQ(status.message(),
            "Unable to parse 'data': Shape does not match true shape of 'data' field");
  status = builder.AddInput(Json("UINT8", {2}, {Int(-1), Int(2), Int(3)}));
  EXPECT_EQ(status.message(),
            "Unable to parse 'data': attempt to access JSON non-unsigned-integer as "
            "unsigned-integer");
  status = builder.AddInput(Json("FP16", {1}, {Int(1)}));
  EXPECT_EQ(status.message(),
            "receiving FP16 data via JSON is not supported. Please use the binary data "
            "format for input IN");
  // A zero-element shape reads nothing; Triton counts a shape without dims as zero
  // elements too (the core then words what is wrong with it).
  EXPECT_TRUE(builder.AddInput(Json("FP16", {0}, {}, "A")).ok());
  EXPECT_TRUE(builder.AddInput(Json("FP32", {}, {Int(1), Int(2)}, "B")).ok());
  // ... even of an unknown type: that is left to the core's validation.
  EXPECT_TRUE(builder.AddInput(Json("FLOAT", {0}, {Text("x")}, "C")).ok());
  EXPECT_EQ(request.inputs.back().dtype, DataType::kInvalid);
  // BYTES elements are the core's to count.
  EXPECT_TRUE(builder.AddInput(Json("BYTES", {2}, {Text("a")}, "D")).ok());
  EXPECT_TRUE(builder.AddInput(Json("BYTES", {1}, {Text("a"), Text("b")}, "E")).ok());
  // `data` must be an array before its type is looked at.
  InputDescription not_array = Json("FLOAT", {1}, {Int(1)}, "F");
  not_array.json_is_array = false;
  EXPECT_EQ(builder.AddInput(not_array).message(),
            "Unable to parse 'data': attempt to access JSON non-array as array");
  not_array.datatype = "FP16";
  EXPECT_EQ(builder.AddInput(not_array).message(),
            "Unable to parse 'data': attempt to access JSON non-array as array");
  // A second input of a name is refused as it is added, before its data is read.
  EXPECT_EQ(builder.AddInput(Json("FP32", {5}, {Text("x")}, "A")).message(),
            "[request id: <id_unknown>] input 'A' already exists in request");
}

TEST(RequestBuilder, SharedMemoryNeedsARegistryThatAllowsIt) {
  InferenceRequest request;
  SharedMemoryRegistry registry;
  InputDescription in;
  in.name = "IN";
  in.datatype = "FP32";
  in.shape = {1};
  in.source = InputDescription::Source::kSharedMemory;
  in.shm = {"r", 0, 4};
  RequestBuilder none(&request, WireProtocol::kGrpc, "m", nullptr);
  EXPECT_EQ(none.AddInput(in).code(), StatusCode::kUnsupported);
  RequestBuilder builder(&request, WireProtocol::kGrpc, "m", &registry);
  Status status = builder.AddInput(in);
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "Unable to find shared memory region: 'r'");
  registry.set_allowed(false);
  EXPECT_EQ(builder.AddInput(in).code(), StatusCode::kUnsupported);
  OutputDescription out;
  out.name = "OUT";
  out.to_shm = true;
  out.shm = {"r", 0, 4};
  ShmOutputs targets;
  EXPECT_EQ(builder.AddOutput(out, &targets).code(), StatusCode::kUnsupported);
}

TEST(RequestBuilder, OutputsParametersAndMissingData) {
  InferenceRequest request;
  RequestBuilder builder(&request, WireProtocol::kGrpc, "m", nullptr);
  OutputDescription out;
  out.name = "OUT";
  out.class_count = 3;
  ASSERT_TRUE(builder.AddOutput(out, nullptr).ok());
  EXPECT_EQ(request.ClassCount("OUT"), 3u);
  EXPECT_EQ(request.requested_outputs, std::vector<std::string>({"OUT"}));
  EXPECT_EQ(builder.SetParameters({{"triton_x", std::string("x")}}).code(),
            StatusCode::kInvalidArg);
  ASSERT_TRUE(builder.SetParameters({{"priority", uint64_t{2}}}).ok());
  EXPECT_EQ(request.priority, 2u);
  InputDescription in;
  in.name = "IN";
  in.datatype = "FP32";
  in.source = InputDescription::Source::kMissing;
  EXPECT_EQ(builder.AddInput(in).message(),
            "unable to find data for input tensor 'IN' for model 'm' in request.");
}

TEST(RequestBuilder, RawBodyShapeIsDeduced) {
  const std::string body(12, '\0');
  InferenceRequest request;
  ModelSpec spec = Spec(DataType::kFp32, {-1}, 4);
  ASSERT_TRUE(DeduceRawInput(spec, body.data(), body.size(), nullptr, &request).ok());
  EXPECT_EQ(request.inputs[0].shape, Shape({1, 3}));
  InferenceRequest text;
  ModelSpec bytes = Spec(DataType::kBytes, {1});
  ASSERT_TRUE(DeduceRawInput(bytes, "abc", 3, nullptr, &text).ok());
  EXPECT_EQ(text.inputs[0].byte_size, 7u);
  EXPECT_EQ(CountBytesElements(text.inputs[0].data, text.inputs[0].byte_size), 1);
  InferenceRequest two;
  ModelSpec wild = Spec(DataType::kFp32, {-1, -1});
  EXPECT_EQ(DeduceRawInput(wild, body.data(), body.size(), nullptr, &two).code(),
            StatusCode::kInvalidArg);
}

TEST(RequestBuilder, DecoupledRefusedOnOneResponseEndpoints) {
  ModelSpec spec = Spec(DataType::kFp32, {1});
  spec.decoupled = true;
  EXPECT_EQ(CheckTransactionPolicy(spec, WireProtocol::kHttp).code(),
            StatusCode::kUnsupported);
  EXPECT_EQ(CheckTransactionPolicy(spec, WireProtocol::kGrpc).message(),
            "ModelInfer RPC doesn't support models with decoupled transaction policy");
  EXPECT_TRUE(CheckTransactionPolicy(spec, WireProtocol::kNone).ok());
}

TEST(StatusTable, OneRowPerCode) {
  EXPECT_EQ(HttpStatusOf(StatusCode::kUnsupported), 501);
  EXPECT_EQ(HttpStatusOf(StatusCode::kAlreadyExists), 400);
  EXPECT_EQ(StatusCodeFromName("NOT_FOUND"), StatusCode::kNotFound);
  EXPECT_EQ(StatusCodeFromName("bogus"), StatusCode::kUnknown);
  size_t count = 0;
  const StatusCodeInfo* table = StatusCodeTable(&count);
  EXPECT_EQ(count, 8u);
  EXPECT_STREQ(table[0].name, "UNKNOWN");
}

}  // namespace
}  // namespace tritonx
