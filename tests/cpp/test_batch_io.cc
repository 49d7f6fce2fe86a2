// GatherInputs / ScatterOutputs: concatenation along dim 0 into arena buffers and
// zero-copy slicing back, for fixed-size types and BYTES.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "core/batch_io.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::MakeSpec;

std::string BytesWire(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    uint32_t length = static_cast<uint32_t>(item.size());
    out.append(reinterpret_cast<const char*>(&length), sizeof(length));
    out += item;
  }
  return out;
}

std::vector<std::string> ParseBytes(const Tensor& tensor) {
  std::vector<std::string> items;
  size_t offset = 0;
  while (offset < tensor.byte_size) {
    uint32_t length;
    std::memcpy(&length, tensor.data + offset, sizeof(length));
    offset += sizeof(length);
    items.emplace_back(tensor.data + offset, length);
    offset += length;
  }
  return items;
}

Tensor Floats(const std::string& name, Shape shape, float first) {
  auto values =
      std::make_shared<std::vector<float>>(static_cast<size_t>(ElementCount(shape)));
  std::iota(values->begin(), values->end(), first);
  Tensor tensor;
  tensor.name = name;
  tensor.dtype = DataType::kFp32;
  tensor.shape = std::move(shape);
  tensor.data = reinterpret_cast<const char*>(values->data());
  tensor.byte_size = values->size() * sizeof(float);
  tensor.owner = values;
  return tensor;
}

Tensor Bytes(const std::string& name, Shape shape,
             const std::vector<std::string>& items) {
  auto wire = std::make_shared<std::string>(BytesWire(items));
  Tensor tensor;
  tensor.name = name;
  tensor.dtype = DataType::kBytes;
  tensor.shape = std::move(shape);
  tensor.data = wire->data();
  tensor.byte_size = wire->size();
  tensor.owner = wire;
  return tensor;
}

RequestPtr RequestWith(std::vector<Tensor> inputs) {
  auto request = std::make_shared<InferenceRequest>();
  request->batch_size = inputs.front().shape.front();
  request->inputs = std::move(inputs);
  return request;
}

// A model with a BYTES output "OUT".
ModelSpec BytesOutSpec() {
  ModelSpec spec = MakeSpec(8, {-1});
  spec.outputs.push_back({"OUT", DataType::kBytes, {-1}, false, false, {}, {}});
  return spec;
}

Batch MakeBatch(std::vector<RequestPtr> requests) {
  Batch batch;
  for (const auto& request : requests) batch.total_batch_size += request->batch_size;
  batch.requests = std::move(requests);
  return batch;
}

std::vector<float> FloatsOf(const Tensor& tensor) {
  std::vector<float> out(tensor.byte_size / sizeof(float));
  std::memcpy(out.data(), tensor.data, tensor.byte_size);
  return out;
}

TEST(BatchIo, SingleRequestPassesThroughWithoutCopy) {
  auto arena = TensorArena::Create(1 << 20, false);
  RequestPtr request = RequestWith({Floats("INPUT0", {2, 4}, 0)});
  Batch batch = MakeBatch({request});
  ASSERT_TRUE(GatherInputs(MakeSpec(8), *arena, &batch).ok());
  ASSERT_EQ(batch.gathered_inputs.size(), 1u);
  EXPECT_EQ(batch.gathered_inputs[0].data, request->inputs[0].data);
  EXPECT_EQ(arena->Stats().allocations, 0u);
}

TEST(BatchIo, SingleRequestIsCopiedIntoTheArenaWhenAsked) {
  auto arena = TensorArena::Create(1 << 20, false);
  RequestPtr request = RequestWith({Floats("INPUT0", {2, 4}, 5)});
  Batch batch = MakeBatch({request});
  ASSERT_TRUE(GatherInputs(MakeSpec(8), *arena, &batch, /*copy_single=*/true).ok());
  ASSERT_EQ(batch.gathered_inputs.size(), 1u);
  const Tensor& staged = batch.gathered_inputs[0];
  EXPECT_NE(staged.data, request->inputs[0].data);
  EXPECT_EQ(staged.name, "INPUT0");
  EXPECT_EQ(staged.shape, (Shape{2, 4}));
  EXPECT_EQ(FloatsOf(staged), FloatsOf(request->inputs[0]));
  EXPECT_EQ(arena->Stats().allocations, 1u);
  EXPECT_EQ(batch.arena_blocks.size(), 1u);
}

TEST(BatchIo, GathersAlongDimZero) {
  auto arena = TensorArena::Create(1 << 20, false);
  ModelSpec spec = MakeSpec(8, {2});
  spec.inputs.push_back({"INPUT1", DataType::kFp32, {3}, false, false, {}, {}});
  Batch batch = MakeBatch({
      RequestWith({Floats("INPUT0", {1, 2}, 0), Floats("INPUT1", {1, 3}, 100)}),
      // Inputs in another order: gathered by name.
      RequestWith({Floats("INPUT1", {2, 3}, 200), Floats("INPUT0", {2, 2}, 10)}),
      RequestWith({Floats("INPUT0", {1, 2}, 20), Floats("INPUT1", {1, 3}, 300)}),
  });
  ASSERT_TRUE(GatherInputs(spec, *arena, &batch).ok());
  ASSERT_EQ(batch.gathered_inputs.size(), 2u);
  const Tensor& in0 = batch.gathered_inputs[0];
  const Tensor& in1 = batch.gathered_inputs[1];
  EXPECT_EQ(in0.name, "INPUT0");
  EXPECT_EQ(in0.shape, (Shape{4, 2}));
  EXPECT_EQ(FloatsOf(in0), (std::vector<float>{0, 1, 10, 11, 12, 13, 20, 21}));
  EXPECT_EQ(in1.shape, (Shape{4, 3}));
  EXPECT_EQ(FloatsOf(in1), (std::vector<float>{100, 101, 102, 200, 201, 202, 203, 204,
                                               205, 300, 301, 302}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(in0.data) % 64, 0u);
  EXPECT_EQ(batch.arena_blocks.size(), 2u);
  EXPECT_TRUE(in0.owner);
  EXPECT_EQ(arena->Stats().allocations, 2u);
  EXPECT_GT(arena->Stats().in_use_bytes, 0u);
  batch = Batch();
  EXPECT_EQ(arena->Stats().in_use_bytes, 0u);  // the blocks went back to the arena
}

TEST(BatchIo, GathersBytes) {
  auto arena = TensorArena::Create(1 << 20, false);
  ModelSpec spec;
  spec.name = "s";
  spec.max_batch_size = 8;
  spec.inputs.push_back({"TEXT", DataType::kBytes, {-1}, false, false, {}, {}});
  Batch batch = MakeBatch({
      RequestWith({Bytes("TEXT", {1, 2}, {"a", "bc"})}),
      RequestWith({Bytes("TEXT", {2, 2}, {"", "def", "g", "hijk"})}),
  });
  ASSERT_TRUE(GatherInputs(spec, *arena, &batch).ok());
  const Tensor& text = batch.gathered_inputs.at(0);
  EXPECT_EQ(text.dtype, DataType::kBytes);
  EXPECT_EQ(text.shape, (Shape{3, 2}));
  EXPECT_EQ(ParseBytes(text),
            (std::vector<std::string>{"a", "bc", "", "def", "g", "hijk"}));
}

TEST(BatchIo, GatherFailsWhenARequestLacksAnInput) {
  auto arena = TensorArena::Create(1 << 20, false);
  Batch batch = MakeBatch({
      RequestWith({Floats("INPUT0", {1, 4}, 0), Floats("OPT", {1, 4}, 0)}),
      RequestWith({Floats("INPUT0", {1, 4}, 0)}),
  });
  Status status = GatherInputs(MakeSpec(8), *arena, &batch);
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_EQ(status.message(), "batched requests disagree on input 'OPT'");
}

TEST(BatchIo, ScatterSlicesWithoutCopy) {
  Batch batch = MakeBatch({
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
      RequestWith({Floats("INPUT0", {2, 2}, 0)}),
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
  });
  Tensor output = Floats("OUTPUT0", {4, 2}, 0);
  batch.gathered_outputs.push_back(output);
  ASSERT_TRUE(ScatterOutputs(MakeSpec(8, {2}), &batch).ok());
  ASSERT_EQ(batch.responses.size(), 3u);
  const Tensor& first = batch.responses[0]->outputs.at(0);
  const Tensor& second = batch.responses[1]->outputs.at(0);
  const Tensor& third = batch.responses[2]->outputs.at(0);
  EXPECT_EQ(first.shape, (Shape{1, 2}));
  EXPECT_EQ(second.shape, (Shape{2, 2}));
  EXPECT_EQ(third.shape, (Shape{1, 2}));
  EXPECT_EQ(first.data, output.data);  // slices of the same buffer
  EXPECT_EQ(second.data, output.data + 8);
  EXPECT_EQ(third.data, output.data + 24);
  EXPECT_EQ(second.byte_size, 16u);
  EXPECT_EQ(FloatsOf(third), (std::vector<float>{6, 7}));
  EXPECT_EQ(second.owner, output.owner);
}

TEST(BatchIo, ScatterBytes) {
  Batch batch = MakeBatch({
      RequestWith({Floats("INPUT0", {2, 1}, 0)}),
      RequestWith({Floats("INPUT0", {1, 1}, 0)}),
  });
  batch.gathered_outputs.push_back(
      Bytes("OUT", {3, 2}, {"a", "", "bcd", "e", "ff", "g"}));
  ASSERT_TRUE(ScatterOutputs(BytesOutSpec(), &batch).ok());
  const Tensor& first = batch.responses[0]->outputs.at(0);
  const Tensor& second = batch.responses[1]->outputs.at(0);
  EXPECT_EQ(first.shape, (Shape{2, 2}));
  EXPECT_EQ(second.shape, (Shape{1, 2}));
  EXPECT_EQ(ParseBytes(first), (std::vector<std::string>{"a", "", "bcd", "e"}));
  EXPECT_EQ(ParseBytes(second), (std::vector<std::string>{"ff", "g"}));
  EXPECT_EQ(first.byte_size + second.byte_size, batch.gathered_outputs[0].byte_size);
}

TEST(BatchIo, ScatterRejectsWrongBatchDim) {
  Batch batch = MakeBatch({
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
  });
  batch.gathered_outputs.push_back(Floats("OUTPUT0", {3, 2}, 0));
  Status status = ScatterOutputs(MakeSpec(8, {2}), &batch);
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_EQ(status.message(), "output 'OUTPUT0' has shape [3,2], expected batch dim 2");
}

TEST(BatchIo, ScatterSkipsOutputsTheModelDoesNotDeclare) {
  Batch batch = MakeBatch({
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
  });
  batch.gathered_outputs.push_back(Floats("OUTPUT0", {2, 2}, 0));
  batch.gathered_outputs.push_back(Floats("UNDECLARED", {1}, 0));  // not batch-shaped
  ASSERT_TRUE(ScatterOutputs(MakeSpec(8, {2}), &batch).ok());
  ASSERT_EQ(batch.responses[1]->outputs.size(), 1u);
  EXPECT_EQ(batch.responses[1]->outputs[0].name, "OUTPUT0");
}

TEST(BatchIo, ScatterSlicesTheStatesTheSequenceBatcherKeeps) {
  Batch batch = MakeBatch({
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
  });
  ModelSpec spec = MakeSpec(8, {2});
  spec.state_outputs = {"NEXT_STATE"};
  batch.gathered_outputs.push_back(Floats("OUTPUT0", {2, 2}, 0));
  batch.gathered_outputs.push_back(Floats("NEXT_STATE", {2, 1}, 10));
  ASSERT_TRUE(ScatterOutputs(spec, &batch).ok());
  ASSERT_EQ(batch.responses[1]->outputs.size(), 2u);
  const Tensor& state = batch.responses[1]->outputs[1];
  EXPECT_EQ(state.name, "NEXT_STATE");
  EXPECT_EQ(state.shape, (Shape{1, 1}));
  EXPECT_EQ(FloatsOf(state), (std::vector<float>{11}));
}

TEST(BatchIo, ScatterRejectsMalformedBytes) {
  Batch batch = MakeBatch({
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
  });
  Tensor broken = Bytes("OUT", {2}, {"abc", "de"});
  broken.byte_size -= 1;
  batch.gathered_outputs.push_back(broken);
  Status status = ScatterOutputs(BytesOutSpec(), &batch);
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_EQ(status.message(), "malformed BYTES output 'OUT'");
}

// A backend's output whose bytes do not fill its shape (a broken stub process or
// plug-in) is refused, never sliced past its buffer.
TEST(BatchIo, ScatterRejectsAShapeTheBytesDoNotFill) {
  Batch batch = MakeBatch({
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
  });
  Tensor short_output = Floats("OUTPUT0", {2, 2}, 0);
  short_output.shape = {2, 1000};
  batch.gathered_outputs.push_back(short_output);
  Status status = ScatterOutputs(MakeSpec(8, {-1}), &batch);
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_EQ(status.message(),
            "output 'OUTPUT0' has shape [2,1000] but holds only 16 bytes");

  Batch negative = MakeBatch({
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
      RequestWith({Floats("INPUT0", {1, 2}, 0)}),
  });
  Tensor odd = Floats("OUTPUT0", {2, 2}, 0);
  odd.shape = {2, -2};
  negative.gathered_outputs.push_back(odd);
  status = ScatterOutputs(MakeSpec(8, {-1}), &negative);
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_EQ(status.message(), "output 'OUTPUT0' has an invalid shape [2,-2]");
}

TEST(BatchIo, ScatterSingleRequestHandsOutputsOver) {
  Batch batch = MakeBatch({RequestWith({Floats("INPUT0", {3, 2}, 0)})});
  Tensor output = Floats("OUTPUT0", {3, 2}, 0);
  batch.gathered_outputs.push_back(output);
  ASSERT_TRUE(ScatterOutputs(MakeSpec(8, {2}), &batch).ok());
  ASSERT_EQ(batch.responses.size(), 1u);
  EXPECT_EQ(batch.responses[0]->outputs.at(0).data, output.data);
  EXPECT_EQ(batch.responses[0]->outputs.at(0).shape, (Shape{3, 2}));
}

TEST(BatchIo, GatherThenScatterRoundTrip) {
  auto arena = TensorArena::Create(1 << 20, false);
  ModelSpec spec = MakeSpec(8, {3});
  std::vector<RequestPtr> requests;
  for (int i = 0; i < 5; ++i) {
    requests.push_back(RequestWith({Floats("INPUT0", {1 + i % 2, 3}, 10.f * i)}));
  }
  Batch batch = MakeBatch(requests);
  ASSERT_TRUE(GatherInputs(spec, *arena, &batch).ok());
  Tensor echoed = batch.gathered_inputs[0];
  echoed.name = "OUTPUT0";
  batch.gathered_outputs.push_back(echoed);
  ASSERT_TRUE(ScatterOutputs(spec, &batch).ok());
  for (size_t i = 0; i < requests.size(); ++i) {
    const Tensor& out = batch.responses[i]->outputs.at(0);
    EXPECT_EQ(out.shape, requests[i]->inputs[0].shape);
    EXPECT_EQ(FloatsOf(out), FloatsOf(requests[i]->inputs[0])) << i;
  }
}

}  // namespace
}  // namespace tritonx
