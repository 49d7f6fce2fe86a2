// ValidateRequest: Triton's checks and messages, batch size, shape key, reshape.
#include <gtest/gtest.h>

#include "core/model_spec.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::FloatTensor;
using testing::MakeSpec;

const char kBatchNote[] =
    ". NOTE: Setting a non-zero max_batch_size in the model config requires a batch "
    "dimension to be prepended to each input shape. If you want to specify the full "
    "shape including the batch dim in your input dims config, try setting "
    "max_batch_size to zero. See the model configuration docs for more info on "
    "max_batch_size.";

std::string BytesWire(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    uint32_t length = static_cast<uint32_t>(item.size());
    out.append(reinterpret_cast<const char*>(&length), sizeof(length));
    out += item;
  }
  return out;
}

Tensor BytesTensor(const std::string& name, Shape shape,
                   std::shared_ptr<std::string> wire) {
  Tensor tensor;
  tensor.name = name;
  tensor.dtype = DataType::kBytes;
  tensor.shape = std::move(shape);
  tensor.data = wire->data();
  tensor.byte_size = wire->size();
  tensor.owner = std::move(wire);
  return tensor;
}

Status Validate(const ModelSpec& spec, std::vector<Tensor> inputs) {
  InferenceRequest request;
  request.inputs = std::move(inputs);
  return ValidateRequest(spec, &request);
}

TEST(ModelSpec, AcceptsAValidBatchedRequest) {
  ModelSpec spec = MakeSpec(8, {4});
  InferenceRequest request;
  request.inputs.push_back(FloatTensor("INPUT0", {3, 4}));
  ASSERT_TRUE(ValidateRequest(spec, &request).ok());
  EXPECT_EQ(request.batch_size, 3);
  EXPECT_EQ(request.shape_key, "INPUT0[4]");
}

TEST(ModelSpec, AcceptsANonBatchedRequest) {
  ModelSpec spec = MakeSpec(0, {2, 2});
  InferenceRequest request;
  request.inputs.push_back(FloatTensor("INPUT0", {2, 2}));
  ASSERT_TRUE(ValidateRequest(spec, &request).ok());
  EXPECT_EQ(request.batch_size, 1);
}

TEST(ModelSpec, FindsInputsAndOutputs) {
  ModelSpec spec = MakeSpec(8);
  ASSERT_NE(spec.FindInput("INPUT0"), nullptr);
  EXPECT_EQ(spec.FindInput("OUTPUT0"), nullptr);
  ASSERT_NE(spec.FindOutput("OUTPUT0"), nullptr);
  EXPECT_EQ(spec.FindOutput("nope"), nullptr);
}

TEST(ModelSpec, RejectsUnexpectedInput) {
  // As many inputs as the model has, one of them unknown.
  Status status = Validate(MakeSpec(8), {FloatTensor("EXTRA", {1, 4})});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(), "unexpected inference input 'EXTRA' for model 'm'");
}

TEST(ModelSpec, NamesTheInputTritonWalksToFirst) {
  // Triton walks its hash map of the request's inputs: of two unknown ones it
  // meets the second first (libstdc++'s order for these names).
  ModelSpec spec = MakeSpec(0);
  spec.inputs.push_back({"INPUT1", DataType::kFp32, {4}, false, false, {}, {}});
  for (const auto& [first, second] :
       {std::pair{"OUTPUT0", "x"}, std::pair{"x", "OUTPUT0"}}) {
    Status status = Validate(spec, {FloatTensor(first, {4}), FloatTensor(second, {4})});
    EXPECT_EQ(status.message(),
              std::string("unexpected inference input '") + second + "' for model 'm'");
  }
  // One walk checks the names and the batch dims: of "INPUT0" (no shape) and "x",
  // Triton meets "INPUT0" first.
  spec = MakeSpec(8);
  spec.inputs.push_back({"INPUT1", DataType::kFp32, {4}, false, false, {}, {}});
  Status status = Validate(spec, {FloatTensor("x", {1, 4}), FloatTensor("INPUT0", {})});
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] input 'INPUT0' has no shape but model "
            "requires batch dimension for 'm'");
}

TEST(ModelSpec, RejectsTooManyInputsWithTritonsText) {
  // Triton 2.51's text, its "]" for an empty missing list included.
  Status status = Validate(
      MakeSpec(8), {FloatTensor("INPUT0", {1, 4}), FloatTensor("EXTRA", {1, 4})});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] expected 1 inputs but got 2 inputs for model "
            "'m'. Got input(s) ['EXTRA','INPUT0'], but missing required input(s) ]. "
            "Please provide all required input(s).");
}

TEST(ModelSpec, RejectsDuplicateInput) {
  // Before the count: Triton refuses a duplicate as it is added.
  Status status = Validate(
      MakeSpec(8), {FloatTensor("INPUT0", {1, 4}), FloatTensor("INPUT0", {1, 4}),
                    FloatTensor("EXTRA", {1, 4})});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] input 'INPUT0' already exists in request");
}

TEST(ModelSpec, RejectsMissingRequiredInput) {
  ModelSpec spec = MakeSpec(8);
  spec.inputs.push_back({"INPUT1", DataType::kFp32, {4}, false, false, {}, {}});
  Status status = Validate(spec, {FloatTensor("INPUT0", {1, 4})});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] expected 2 inputs but got 1 inputs for model "
            "'m'. Got input(s) ['INPUT0'], "
            "but missing required input(s) ['INPUT1']. Please provide all required "
            "input(s).");
}

TEST(ModelSpec, LeftOutRequiredInputIsReportedAfterTheOthersChecks) {
  // The right number of inputs, a required one left out: Triton checks the given
  // ones (and would then run the model); tritonx refuses it after those checks.
  ModelSpec spec = MakeSpec(8);
  spec.inputs.push_back({"OPT", DataType::kInt32, {4}, true, false, {}, {}});
  Status status = Validate(spec, {FloatTensor("OPT", {1, 4})});
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] inference input 'OPT' data-type is 'FP32', "
            "but model 'm' expects 'INT32'");
  spec.inputs.back().dtype = DataType::kFp32;
  status = Validate(spec, {FloatTensor("OPT", {1, 4})});
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] expected number of inputs between 1 and 2 but "
            "got 1 inputs for model 'm'. Got input(s) ['OPT'], but missing required "
            "input(s) ['INPUT0']. Please provide all required input(s).");
}

TEST(ModelSpec, OptionalInputMayBeLeftOut) {
  ModelSpec spec = MakeSpec(8);
  spec.inputs.push_back({"OPT", DataType::kFp32, {4}, true, false, {}, {}});
  InferenceRequest request;
  request.inputs.push_back(FloatTensor("INPUT0", {2, 4}));
  ASSERT_TRUE(ValidateRequest(spec, &request).ok());
  EXPECT_EQ(request.batch_size, 2);
  // Requests with and without the optional input do not batch together.
  InferenceRequest with;
  with.inputs.push_back(FloatTensor("INPUT0", {2, 4}));
  with.inputs.push_back(FloatTensor("OPT", {2, 4}));
  ASSERT_TRUE(ValidateRequest(spec, &with).ok());
  EXPECT_NE(with.shape_key, request.shape_key);
}

TEST(ModelSpec, RejectsWrongDataType) {
  Tensor input = FloatTensor("INPUT0", {1, 4});
  input.dtype = DataType::kInt32;
  Status status = Validate(MakeSpec(8), {input});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] inference input 'INPUT0' data-type is 'INT32', "
            "but model 'm' expects 'FP32'");
}

TEST(ModelSpec, RejectsWrongShapeWithBatchingNote) {
  Status status = Validate(MakeSpec(8), {FloatTensor("INPUT0", {1, 3})});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            std::string("[request id: <id_unknown>] unexpected shape for input "
                        "'INPUT0' for model 'm'. Expected [-1,4], got [1,3]") +
                kBatchNote);
}

TEST(ModelSpec, RejectsMissingBatchDim) {
  Tensor input = FloatTensor("INPUT0", {4});
  input.shape = {};
  input.byte_size = 4;
  Status status = Validate(MakeSpec(8), {input});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] input 'INPUT0' has no shape but model requires "
            "batch dimension for 'm'");
}

TEST(ModelSpec, RejectsWrongShapeWithoutBatching) {
  Status status = Validate(MakeSpec(0, {4}), {FloatTensor("INPUT0", {1, 4})});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(
      status.message(),
      "[request id: <id_unknown>] unexpected shape for input 'INPUT0' for model 'm'. "
      "Expected [4], got [1,4]. ");
}

TEST(ModelSpec, AcceptsVariableDims) {
  ModelSpec spec = MakeSpec(8, {-1, 2});
  InferenceRequest a;
  a.inputs.push_back(FloatTensor("INPUT0", {1, 5, 2}));
  InferenceRequest b;
  b.inputs.push_back(FloatTensor("INPUT0", {1, 3, 2}));
  ASSERT_TRUE(ValidateRequest(spec, &a).ok());
  ASSERT_TRUE(ValidateRequest(spec, &b).ok());
  EXPECT_NE(a.shape_key, b.shape_key);
  Status status = Validate(spec, {FloatTensor("INPUT0", {1, 3, 3})});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
}

TEST(ModelSpec, RejectsBatchSizeMismatchBetweenInputs) {
  ModelSpec spec = MakeSpec(8);
  spec.inputs.push_back({"INPUT1", DataType::kFp32, {4}, false, false, {}, {}});
  Status status =
      Validate(spec, {FloatTensor("INPUT0", {2, 4}), FloatTensor("INPUT1", {3, 4})});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  // Triton's walk meets INPUT1 first: INPUT0 is the one that does not match.
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] input 'INPUT0' batch size does not match other "
            "inputs for 'm'");
}

TEST(ModelSpec, RejectsBatchSizeAboveMax) {
  Status status = Validate(MakeSpec(8), {FloatTensor("INPUT0", {9, 4})});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] inference request batch-size must be <= 8 for "
            "'m'");
}

TEST(ModelSpec, RejectsByteSizeMismatch) {
  Tensor input = FloatTensor("INPUT0", {1, 4});
  input.byte_size = 12;
  Status status = Validate(MakeSpec(8), {input});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(
      status.message(),
      "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for "
      "model 'm'. Expected 16, got 12");
}

TEST(ModelSpec, ChecksBytesElementCount) {
  ModelSpec spec;
  spec.name = "s";
  spec.max_batch_size = 4;
  spec.inputs.push_back({"TEXT", DataType::kBytes, {2}, false, false, {}, {}});
  auto good = std::make_shared<std::string>(BytesWire({"ab", ""}));
  EXPECT_TRUE(Validate(spec, {BytesTensor("TEXT", {1, 2}, good)}).ok());

  auto short_wire = std::make_shared<std::string>(BytesWire({"only"}));
  Status status = Validate(spec, {BytesTensor("TEXT", {1, 2}, short_wire)});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] expected 2 string elements for inference input "
            "'TEXT' for model 's', got 1");

  // A length running past the end, and a cut length indicator, in Triton's words
  // (the first without the request prefix, as there).
  auto malformed = std::make_shared<std::string>(BytesWire({"abc", "de"}));
  malformed->resize(malformed->size() - 1);
  status = Validate(spec, {BytesTensor("TEXT", {1, 2}, malformed)});
  EXPECT_EQ(status.message(),
            "incomplete string data for inference input 'TEXT', expecting string of "
            "length 2 but only 1 bytes available");
  auto cut = std::make_shared<std::string>(BytesWire({"ab"}) + "xy");
  status = Validate(spec, {BytesTensor("TEXT", {1, 2}, cut)});
  EXPECT_EQ(
      status.message(),
      "[request id: <id_unknown>] incomplete string length indicator for "
      "inference input 'TEXT' for model 's', expecting 4 bytes but only 2 bytes "
      "available. Please make sure the string length indicator is in one buffer.");
  // A cut element counts: with one element short of the shape, the count is wrong.
  auto cut_first = std::make_shared<std::string>(BytesWire({"abc"}));
  cut_first->resize(cut_first->size() - 1);
  status = Validate(spec, {BytesTensor("TEXT", {1, 2}, cut_first)});
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] expected 2 string elements for inference input "
            "'TEXT' for model 's', got 1");
  // Too many: refused at the first element past the count, before the rest is read.
  auto three = std::make_shared<std::string>(BytesWire({"a", "b", "c"}) + "xy");
  status = Validate(spec, {BytesTensor("TEXT", {1, 2}, three)});
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] unexpected number of string elements 3 for "
            "inference input 'TEXT' for model 's', expecting 2");
}

TEST(ModelSpec, RejectsUnknownRequestedOutput) {
  InferenceRequest request;
  request.inputs.push_back(FloatTensor("INPUT0", {1, 4}));
  request.requested_outputs = {"OUTPUT0", "NOPE"};
  Status status = ValidateRequest(MakeSpec(8), &request);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(), "unexpected inference output 'NOPE' for model 'm'");
  // Of several unknown ones, the least (Triton's std::set), bytes compared unsigned.
  request.requested_outputs = {"\xc3\xa9", "b", "OUTPUT0", "a"};
  status = ValidateRequest(MakeSpec(8), &request);
  EXPECT_EQ(status.message(), "unexpected inference output 'a' for model 'm'");
  request.requested_outputs = {"\xc3\xa9", "\x7f"};
  status = ValidateRequest(MakeSpec(8), &request);
  EXPECT_EQ(status.message(), "unexpected inference output '\x7f' for model 'm'");
}

TEST(ModelSpec, AppliesInputReshape) {
  ModelSpec spec = MakeSpec(8, {4});
  spec.inputs[0].has_reshape = true;
  spec.inputs[0].reshape = {2, -1};
  InferenceRequest request;
  request.inputs.push_back(FloatTensor("INPUT0", {3, 4}));
  ASSERT_TRUE(ValidateRequest(spec, &request).ok());
  EXPECT_EQ(request.inputs[0].shape, (Shape{3, 2, 2}));
  EXPECT_EQ(request.batch_size, 3);

  ModelSpec flat = MakeSpec(0, {1, 6});
  flat.inputs[0].has_reshape = true;
  flat.inputs[0].reshape = {6};
  InferenceRequest unbatched;
  unbatched.inputs.push_back(FloatTensor("INPUT0", {1, 6}));
  ASSERT_TRUE(ValidateRequest(flat, &unbatched).ok());
  EXPECT_EQ(unbatched.inputs[0].shape, (Shape{6}));
}

TEST(ModelSpec, FailedValidationLeavesBatchFieldsAlone) {
  InferenceRequest request;
  request.inputs.push_back(FloatTensor("INPUT0", {9, 4}));
  EXPECT_FALSE(ValidateRequest(MakeSpec(8), &request).ok());
  EXPECT_EQ(request.batch_size, 1);
  EXPECT_TRUE(request.shape_key.empty());
}

// A tensor claiming `shape` whose data is `bytes` zero bytes, whatever the shape
// says (shapes from the wire are not to be trusted).
Tensor ClaimedTensor(Shape shape, size_t bytes, DataType dtype = DataType::kFp32) {
  auto data = std::make_shared<std::string>(bytes, '\0');
  Tensor tensor;
  tensor.name = "INPUT0";
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.data = data->data();
  tensor.byte_size = data->size();
  tensor.owner = std::move(data);
  return tensor;
}

constexpr int64_t kHuge = (int64_t{1} << 62) + 4;

TEST(ModelSpecOverflow, ByteSizeThatWrapsIsRefused) {
  // 2^62+4 FP32 elements is 2^64+16 bytes: wrapped, it would equal the 16 sent.
  Status status = Validate(MakeSpec(8, {-1}), {ClaimedTensor({1, kHuge}, 16)});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(
      status.message(),
      "byte size for tensor 'INPUT0' exceeds maximum size of 9223372036854775807");
}

TEST(ModelSpecOverflow, ElementCountThatWrapsIsRefused) {
  // 2^32 * 2^32 elements wraps to 0, which would match an empty payload.
  Status status = Validate(MakeSpec(0, {-1, -1}),
                           {ClaimedTensor({int64_t{1} << 32, int64_t{1} << 32}, 0)});
  EXPECT_EQ(
      status.message(),
      "byte size for tensor 'INPUT0' exceeds maximum size of 9223372036854775807");
  ModelSpec text = MakeSpec(0, {-1, -1});
  text.inputs[0].dtype = DataType::kBytes;
  status = Validate(
      text, {ClaimedTensor({int64_t{1} << 32, int64_t{1} << 32}, 0, DataType::kBytes)});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "element count for tensor 'INPUT0' exceeds maximum size of "
            "9223372036854775807");
}

TEST(ModelSpecOverflow, LargeButRepresentableSizeIsAMismatch) {
  Status status = Validate(MakeSpec(0, {-1}), {ClaimedTensor({int64_t{1} << 40}, 16)});
  EXPECT_EQ(
      status.message(),
      "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for "
      "model 'm'. Expected 4398046511104, got 16");
}

TEST(ModelSpecNegativeDims, UnspecifiedDimIsRefusedWithTritonsMessage) {
  InferenceRequest request;
  request.id = "r1";
  request.inputs.push_back(ClaimedTensor({1, -1}, 4));
  Status status = ValidateRequest(MakeSpec(8, {-1}), &request);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "[request id: r1] All input dimensions should be specified for input "
            "'INPUT0' for model 'm', got [1,-1]");
  status = Validate(MakeSpec(0, {-1, 4}), {ClaimedTensor({-1, 4}, 16)});
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] All input dimensions should be specified for "
            "input 'INPUT0' for model 'm', got [-1,4]");
}

TEST(ModelSpecNegativeDims, OtherNegativeDimsAreInvalid) {
  Status status = Validate(MakeSpec(8, {-1}), {ClaimedTensor({1, -4}, 16)});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(), "tensor 'INPUT0' contains an invalid dimension [1,-4]");
  // Two negatives multiply to a positive count; still refused.
  status = Validate(MakeSpec(0, {-1, -1}), {ClaimedTensor({-2, -2}, 16)});
  EXPECT_EQ(status.message(), "tensor 'INPUT0' contains an invalid dimension [-2,-2]");
  // A negative batch dim.
  status = Validate(MakeSpec(8, {4}), {ClaimedTensor({-1, 4}, 16)});
  EXPECT_EQ(status.message(), "tensor 'INPUT0' contains an invalid dimension [-1,4]");
  ModelSpec text = MakeSpec(0, {-1});
  text.inputs[0].dtype = DataType::kBytes;
  status = Validate(text, {ClaimedTensor({-3}, 0, DataType::kBytes)});
  EXPECT_EQ(status.message(),
            "tensor 'INPUT0' contains an invalid dimension in shape [-3]");
}

TEST(ModelSpecZeroBatch, ZeroBatchIsRefused) {
  // What tritonclient sends for np.zeros((0, 4)): Triton reports the size of one
  // item as expected, the batch dim being dropped.
  Status status = Validate(MakeSpec(8, {4}), {ClaimedTensor({0, 4}, 0)});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(
      status.message(),
      "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for "
      "model 'm'. Expected 16, got 0");
  // Data for exactly one item with a zero batch dim is refused too.
  status = Validate(MakeSpec(8, {4}), {ClaimedTensor({0, 4}, 16)});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] inference request batch-size must be >= 1 for "
            "'m'");
  // Zero-sized non-batch dims stay valid.
  InferenceRequest empty_item;
  empty_item.inputs.push_back(ClaimedTensor({2, 0}, 0));
  EXPECT_TRUE(ValidateRequest(MakeSpec(8, {-1}), &empty_item).ok());
  EXPECT_EQ(empty_item.batch_size, 2);
  // A model that does not batch may take a zero-sized first dim.
  EXPECT_TRUE(Validate(MakeSpec(0, {-1, 4}), {ClaimedTensor({0, 4}, 0)}).ok());
}

TEST(ModelSpecZeroBatch, BatchSizeIsCheckedBeforeShapes) {
  // Triton settles the batch size before looking at shapes.
  Status status = Validate(MakeSpec(8, {4}), {FloatTensor("INPUT0", {9, 3})});
  EXPECT_EQ(status.message(),
            "[request id: <id_unknown>] inference request batch-size must be <= 8 for "
            "'m'");
}

TEST(CheckedElementCount, CountsAndRefuses) {
  int64_t count = -7;
  EXPECT_EQ(CheckedElementCount({}, &count), ShapeCount::kOk);
  EXPECT_EQ(count, 1);
  EXPECT_EQ(CheckedElementCount({0, int64_t{1} << 62, 8}, &count), ShapeCount::kOk);
  EXPECT_EQ(count, 0);
  EXPECT_EQ(CheckedElementCount({int64_t{1} << 31, int64_t{1} << 31}, &count),
            ShapeCount::kOk);
  EXPECT_EQ(count, int64_t{1} << 62);
  // 2^63 is one past INT64_MAX.
  EXPECT_EQ(CheckedElementCount({int64_t{1} << 62, 2}, &count), ShapeCount::kOverflow);
  EXPECT_EQ(CheckedElementCount({3, -1}, &count), ShapeCount::kInvalidDim);
  // Triton's order: the overflow at the second dim comes before the negative third.
  EXPECT_EQ(CheckedElementCount({int64_t{1} << 62, 4, -2}, &count),
            ShapeCount::kOverflow);
}

}  // namespace
}  // namespace tritonx
