// Ragged batching in the core: the shape key leaves ragged inputs out, gathering
// flattens them and makes batch inputs (values and shapes as Triton's
// backend_input_collector makes them), and BATCH_SCATTER_WITH_INPUT_SHAPE outputs
// are split by their source input's shapes (backend_output_responder).
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "core/batch_inputs.h"
#include "core/batch_io.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::FloatTensor;

// max_batch_size 8; "X" ragged FP32 with dims [-1]; output "Y" FP32 dims [-1].
ModelSpec RaggedSpec() {
  ModelSpec spec;
  spec.name = "ragged";
  spec.max_batch_size = 8;
  TensorSpec x;
  x.name = "X";
  x.dtype = DataType::kFp32;
  x.dims = {-1};
  x.allow_ragged_batch = true;
  spec.inputs.push_back(x);
  TensorSpec y;
  y.name = "Y";
  y.dtype = DataType::kFp32;
  y.dims = {-1};
  spec.outputs.push_back(y);
  return spec;
}

Tensor Iota(const std::string& name, Shape shape, float first) {
  Tensor tensor = FloatTensor(name, shape);
  std::iota(const_cast<float*>(reinterpret_cast<const float*>(tensor.data)),
            const_cast<float*>(reinterpret_cast<const float*>(tensor.data)) +
                ElementCount(shape),
            first);
  return tensor;
}

RequestPtr Request(Shape shape, float first = 0) {
  auto request = std::make_shared<InferenceRequest>();
  request->batch_size = shape[0];
  request->inputs.push_back(Iota("X", std::move(shape), first));
  return request;
}

Batch MakeBatch(std::vector<RequestPtr> requests) {
  Batch batch;
  for (const auto& request : requests) batch.total_batch_size += request->batch_size;
  batch.requests = std::move(requests);
  return batch;
}

template <typename T>
std::vector<T> ValuesOf(const Tensor& tensor) {
  std::vector<T> out(tensor.byte_size / sizeof(T));
  std::memcpy(out.data(), tensor.data, out.size() * sizeof(T));
  return out;
}

const Tensor* Find(const std::vector<Tensor>& tensors, const std::string& name) {
  for (const auto& tensor : tensors) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

TEST(RaggedBatch, ShapeKeyLeavesRaggedInputsOut) {
  ModelSpec spec = RaggedSpec();
  TensorSpec fixed;
  fixed.name = "Z";
  fixed.dtype = DataType::kFp32;
  fixed.dims = {-1};
  spec.inputs.push_back(fixed);
  auto a = std::make_shared<InferenceRequest>();
  a->inputs = {FloatTensor("X", {1, 3}), FloatTensor("Z", {1, 2})};
  auto b = std::make_shared<InferenceRequest>();
  b->inputs = {FloatTensor("X", {1, 5}), FloatTensor("Z", {1, 2})};
  auto c = std::make_shared<InferenceRequest>();
  c->inputs = {FloatTensor("X", {1, 5}), FloatTensor("Z", {1, 4})};
  ASSERT_TRUE(ValidateRequest(spec, a.get()).ok());
  ASSERT_TRUE(ValidateRequest(spec, b.get()).ok());
  ASSERT_TRUE(ValidateRequest(spec, c.get()).ok());
  EXPECT_EQ(a->shape_key, b->shape_key);  // differ only in the ragged input
  EXPECT_NE(b->shape_key, c->shape_key);  // the non-ragged one still counts
}

TEST(RaggedBatch, RaggedInputIsConcatenatedInOneDimension) {
  auto arena = TensorArena::Create(1 << 20, false);
  Batch batch =
      MakeBatch({Request({1, 2}, 0), Request({2, 3}, 10), Request({1, 1}, 20)});
  ASSERT_TRUE(GatherInputs(RaggedSpec(), *arena, &batch).ok());
  ASSERT_EQ(batch.gathered_inputs.size(), 1u);
  const Tensor& x = batch.gathered_inputs[0];
  EXPECT_EQ(x.shape, (Shape{9}));
  EXPECT_EQ(ValuesOf<float>(x), (std::vector<float>{0, 1, 10, 11, 12, 13, 14, 15, 20}));
}

TEST(RaggedBatch, SingleRequestIsFlattenedAndGetsBatchInputs) {
  auto arena = TensorArena::Create(1 << 20, false);
  ModelSpec spec = RaggedSpec();
  spec.batch_inputs.push_back({BatchInputKind::kAccumulatedElementCountWithZero,
                               {"OFFSETS", "OFFSETS_COPY"},
                               DataType::kInt32,
                               "X"});
  RequestPtr request = Request({1, 4});
  Batch batch = MakeBatch({request});
  ASSERT_TRUE(GatherInputs(spec, *arena, &batch).ok());
  ASSERT_EQ(batch.gathered_inputs.size(), 3u);
  EXPECT_EQ(batch.gathered_inputs[0].shape, (Shape{4}));
  EXPECT_EQ(batch.gathered_inputs[0].data, request->inputs[0].data);  // no copy
  EXPECT_EQ(request->inputs[0].shape, (Shape{1, 4}));  // the request is untouched
  for (const char* name : {"OFFSETS", "OFFSETS_COPY"}) {
    const Tensor* offsets = Find(batch.gathered_inputs, name);
    ASSERT_NE(offsets, nullptr) << name;
    EXPECT_EQ(offsets->dtype, DataType::kInt32);
    EXPECT_EQ(offsets->shape, (Shape{2}));
    EXPECT_EQ(ValuesOf<int32_t>(*offsets), (std::vector<int32_t>{0, 4}));
  }
}

// Each kind for requests [1,2], [2,3] (batch size 2: counts 6 elements, two items)
// and [1,1].
struct KindCase {
  BatchInputKind kind;
  Shape shape;
  std::vector<float> values;
};

TEST(RaggedBatch, BatchInputKindsMatchTriton) {
  const std::vector<KindCase> cases = {
      {BatchInputKind::kElementCount, {3}, {2, 6, 1}},
      {BatchInputKind::kAccumulatedElementCount, {3}, {2, 8, 9}},
      {BatchInputKind::kAccumulatedElementCountWithZero, {4}, {0, 2, 8, 9}},
      {BatchInputKind::kMaxElementCountAsShape, {6}, {0, 0, 0, 0, 0, 0}},
      {BatchInputKind::kItemShape, {4, 1}, {2, 3, 3, 1}},
      {BatchInputKind::kItemShapeFlatten, {4}, {2, 3, 3, 1}},
  };
  for (const auto& c : cases) {
    for (DataType dtype : {DataType::kFp32, DataType::kInt32}) {
      auto arena = TensorArena::Create(1 << 20, false);
      ModelSpec spec = RaggedSpec();
      spec.batch_inputs.push_back({c.kind, {"B"}, dtype, "X"});
      Batch batch = MakeBatch({Request({1, 2}), Request({2, 3}), Request({1, 1})});
      ASSERT_TRUE(GatherInputs(spec, *arena, &batch).ok());
      const Tensor* b = Find(batch.gathered_inputs, "B");
      ASSERT_NE(b, nullptr);
      EXPECT_EQ(b->shape, c.shape) << static_cast<int>(c.kind);
      EXPECT_EQ(b->dtype, dtype);
      std::vector<float> values;
      if (dtype == DataType::kFp32) {
        values = ValuesOf<float>(*b);
      } else {
        for (int32_t v : ValuesOf<int32_t>(*b)) values.push_back(static_cast<float>(v));
      }
      EXPECT_EQ(values, c.values) << static_cast<int>(c.kind);
    }
  }
}

TEST(RaggedBatch, ItemShapeOfAMultiDimensionalSource) {
  auto request = std::make_shared<InferenceRequest>();
  request->inputs.push_back(FloatTensor("X", {2, 3, 4}));
  Shape shape;
  std::vector<int64_t> values;
  ASSERT_TRUE(
      ComputeBatchInput({BatchInputKind::kItemShape, {"B"}, DataType::kInt32, "X"},
                        {request}, &shape, &values)
          .ok());
  EXPECT_EQ(shape, (Shape{2, 2}));
  EXPECT_EQ(values, (std::vector<int64_t>{3, 4, 3, 4}));
  ASSERT_TRUE(
      ComputeBatchInput({BatchInputKind::kElementCount, {"B"}, DataType::kInt32, "X"},
                        {request}, &shape, &values)
          .ok());
  EXPECT_EQ(values, (std::vector<int64_t>{24}));
}

TEST(RaggedBatch, MissingSourceFailsTheBatch) {
  auto request = std::make_shared<InferenceRequest>();
  request->id = "r1";
  request->inputs.push_back(FloatTensor("Z", {1, 2}));
  Shape shape;
  std::vector<int64_t> values;
  Status status =
      ComputeBatchInput({BatchInputKind::kElementCount, {"B"}, DataType::kInt32, "X"},
                        {request}, &shape, &values);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_NE(status.message().find("[request id: r1]"), std::string::npos);
}

TEST(RaggedBatch, ScatterWithInputShape) {
  ModelSpec spec = RaggedSpec();
  spec.batch_outputs.push_back({{"Y"}, "X"});
  Batch batch = MakeBatch({Request({1, 2}), Request({2, 3}), Request({1, 1})});
  Tensor y = Iota("Y", {9}, 0);
  batch.gathered_outputs.push_back(y);
  ASSERT_TRUE(ScatterOutputs(spec, &batch).ok());
  ASSERT_EQ(batch.responses.size(), 3u);
  const std::vector<Shape> shapes = {{1, 2}, {2, 3}, {1, 1}};
  const std::vector<std::vector<float>> values = {{0, 1}, {2, 3, 4, 5, 6, 7}, {8}};
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(batch.responses[i]->outputs.size(), 1u);
    const Tensor& out = batch.responses[i]->outputs[0];
    EXPECT_EQ(out.shape, shapes[i]);
    EXPECT_EQ(ValuesOf<float>(out), values[i]);
    EXPECT_EQ(out.owner, y.owner);  // a slice, not a copy
  }
}

TEST(RaggedBatch, ScatterWithInputShapeForOneRequestAndFixedDims) {
  ModelSpec spec = RaggedSpec();
  spec.outputs[0].dims = {-1, 2};  // each input element gives two values
  spec.batch_outputs.push_back({{"Y"}, "X"});
  Batch batch = MakeBatch({Request({1, 3})});
  batch.gathered_outputs.push_back(Iota("Y", {3, 2}, 0));
  ASSERT_TRUE(ScatterOutputs(spec, &batch).ok());
  const Tensor& out = batch.responses[0]->outputs[0];
  EXPECT_EQ(out.shape, (Shape{1, 3, 2}));
  EXPECT_EQ(ValuesOf<float>(out), (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST(RaggedBatch, ScatterWithInputShapeRefusesAShortOutput) {
  ModelSpec spec = RaggedSpec();
  spec.batch_outputs.push_back({{"Y"}, "X"});
  Batch batch = MakeBatch({Request({1, 2}), Request({1, 3})});
  batch.gathered_outputs.push_back(Iota("Y", {4}, 0));
  Status status = ScatterOutputs(spec, &batch);
  EXPECT_EQ(status.code(), StatusCode::kInternal);
}

TEST(RaggedBatch, OtherOutputsAreStillSlicedByBatchSize) {
  ModelSpec spec = RaggedSpec();
  TensorSpec sums;
  sums.name = "S";
  sums.dtype = DataType::kFp32;
  sums.dims = {1};
  spec.outputs.push_back(sums);
  spec.batch_outputs.push_back({{"Y"}, "X"});
  Batch batch = MakeBatch({Request({1, 2}), Request({2, 1})});
  batch.gathered_outputs.push_back(Iota("S", {3, 1}, 0));
  batch.gathered_outputs.push_back(Iota("Y", {4}, 0));
  ASSERT_TRUE(ScatterOutputs(spec, &batch).ok());
  EXPECT_EQ(batch.responses[1]->outputs[0].name, "S");
  EXPECT_EQ(batch.responses[1]->outputs[0].shape, (Shape{2, 1}));
  EXPECT_EQ(ValuesOf<float>(batch.responses[1]->outputs[0]),
            (std::vector<float>{1, 2}));
  EXPECT_EQ(batch.responses[1]->outputs[1].shape, (Shape{2, 1}));
  EXPECT_EQ(ValuesOf<float>(batch.responses[1]->outputs[1]),
            (std::vector<float>{2, 3}));
}

}  // namespace
}  // namespace tritonx
