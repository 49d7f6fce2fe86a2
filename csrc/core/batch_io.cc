#include "batch_io.h"

#include <cstring>

#include "batch_inputs.h"
#include "tensor_memory.h"

namespace tritonx {
namespace {

// Byte offsets of the element boundaries of a BYTES buffer at the given element
// indices (sorted), or false if the buffer is malformed.
bool BytesOffsets(const Tensor& tensor, const std::vector<int64_t>& element_marks,
                  std::vector<size_t>* offsets) {
  offsets->clear();
  size_t offset = 0;
  int64_t element = 0;
  size_t mark = 0;
  while (mark < element_marks.size()) {
    if (element == element_marks[mark]) {
      offsets->push_back(offset);
      ++mark;
      continue;
    }
    if (offset + sizeof(uint32_t) > tensor.byte_size) return false;
    uint32_t length;
    std::memcpy(&length, tensor.data + offset, sizeof(length));
    offset += sizeof(length) + length;
    if (offset > tensor.byte_size) return false;
    ++element;
  }
  return true;
}

// Byte offsets of the given element indices (sorted) of a tensor of any type.
Status ElementOffsets(const Tensor& output, const std::vector<int64_t>& marks,
                      std::vector<size_t>* offsets) {
  offsets->clear();
  if (output.dtype == DataType::kBytes) {
    if (!BytesOffsets(output, marks, offsets)) {
      return Status(StatusCode::kInternal,
                    "malformed BYTES output '" + output.name + "'");
    }
    return Status::Ok();
  }
  for (int64_t mark : marks) {
    offsets->push_back(static_cast<size_t>(mark) * DataTypeByteSize(output.dtype));
  }
  // The slices come from the shape; a backend whose bytes do not fill it (a broken
  // stub process, a plug-in's mistake) must not hand out bytes past its buffer.
  if (!offsets->empty() && offsets->back() > output.byte_size) {
    return Status(StatusCode::kInternal,
                  "output '" + output.name + "' has shape " +
                      ShapeToString(output.shape) + " but holds only " +
                      std::to_string(output.byte_size) + " bytes");
  }
  return Status::Ok();
}

// Copies a lone request's inputs into the arena (same name, type and shape; only
// the bytes move), for executors whose host->device copy wants page-locked memory.
Status StageSingle(TensorArena& arena, Batch* batch) {
  for (Tensor& tensor : batch->gathered_inputs) {
    // Same name, type and shape; only the bytes move (into the arena).
    ArenaBuffer buffer = arena.Allocate(tensor.byte_size);
    if (!buffer) {
      return Status(StatusCode::kInternal,
                    "out of host memory staging input '" + tensor.name + "'");
    }
    if (tensor.byte_size > 0) {
      std::memcpy(buffer->data(), tensor.data, tensor.byte_size);
    }
    tensor.data = buffer->data();
    tensor.owner = buffer;
    batch->arena_blocks.push_back(std::move(buffer));
  }
  return Status::Ok();
}

// Byte offsets of each request's rows (dim 0) of a batched output, and the end.
Status BatchSlices(const Tensor& output, const Batch& batch,
                   std::vector<size_t>* offsets) {
  const int64_t total = batch.total_batch_size;
  if (output.shape.empty() || output.shape[0] != total) {
    return Status(StatusCode::kInternal, "output '" + output.name + "' has shape " +
                                             ShapeToString(output.shape) +
                                             ", expected batch dim " +
                                             std::to_string(total));
  }
  int64_t elements = 0;
  if (CheckedElementCount(output.shape, &elements) != ShapeCount::kOk) {
    return Status(StatusCode::kInternal, "output '" + output.name +
                                             "' has an invalid shape " +
                                             ShapeToString(output.shape));
  }
  const int64_t per_item = total == 0 ? 0 : elements / total;
  std::vector<int64_t> marks;
  int64_t item = 0;
  for (const auto& request : batch.requests) {
    marks.push_back(item * per_item);
    item += request->batch_size;
  }
  marks.push_back(item * per_item);
  return ElementOffsets(output, marks, offsets);
}

// BATCH_SCATTER_WITH_INPUT_SHAPE (Triton's ProcessBatchOutput): the output's config
// dims (its reshape when it has one), behind a -1 batch dim when the model batches,
// with each -1 taken from the same dim of the request's source input; the
// requests' shares follow each other from the start of the output.
Status ScatterShapes(const ModelSpec& spec, const BatchOutputSpec& batch_output,
                     const Tensor& output, const Batch& batch,
                     std::vector<Shape>* shapes, std::vector<size_t>* offsets) {
  const TensorSpec& output_spec = *spec.FindOutput(output.name);
  Shape pattern;
  if (spec.max_batch_size > 0) pattern.push_back(-1);
  const Shape& dims = output_spec.has_reshape ? output_spec.reshape : output_spec.dims;
  pattern.insert(pattern.end(), dims.begin(), dims.end());
  std::vector<int64_t> marks{0};
  for (const auto& request : batch.requests) {
    const Tensor* source = nullptr;
    for (const Tensor& input : request->inputs) {
      if (input.name == batch_output.source_input) source = &input;
    }
    if (source == nullptr) {
      return Status(StatusCode::kInternal, "batch output '" + output.name +
                                               "' has no source input '" +
                                               batch_output.source_input + "'");
    }
    Shape shape = pattern;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] != -1) continue;
      if (d >= source->shape.size()) {
        return Status(StatusCode::kInternal,
                      "batch output '" + output.name + "' has more dims than input '" +
                          source->name + "' " + ShapeToString(source->shape));
      }
      shape[d] = source->shape[d];
    }
    marks.push_back(marks.back() + ElementCount(shape));
    shapes->push_back(std::move(shape));
  }
  if (marks.back() > ElementCount(output.shape)) {
    return Status(StatusCode::kInternal,
                  "batch output '" + output.name + "' has shape " +
                      ShapeToString(output.shape) + ", expected at least " +
                      std::to_string(marks.back()) + " elements");
  }
  return ElementOffsets(output, marks, offsets);
}

}  // namespace

Status GatherInputs(const ModelSpec& spec, TensorArena& arena, Batch* batch,
                    bool copy_single) {
  batch->gathered_inputs.clear();
  const auto& requests = batch->requests;
  if (requests.empty()) return Status::Ok();
  const InferenceRequest& first = *requests.front();
  if (requests.size() == 1) {
    batch->gathered_inputs = first.inputs;
    if (copy_single) {
      Status status = StageSingle(arena, batch);
      if (!status.ok()) return status;
    }
    if (!spec.HasRaggedBatching()) return Status::Ok();
    // Ragged batching looks the same whatever the batch holds: a ragged input is
    // 1-D (a view of the same bytes) and the batch inputs are made.
    for (Tensor& tensor : batch->gathered_inputs) {
      const TensorSpec* input_spec = spec.FindInput(tensor.name);
      if (input_spec != nullptr && input_spec->allow_ragged_batch) {
        tensor.shape = {ElementCount(tensor.shape)};
      }
    }
    return AppendBatchInputs(spec, arena, batch);
  }
  for (const Tensor& model_input : first.inputs) {
    size_t total_bytes = 0;
    std::vector<const Tensor*> parts;
    parts.reserve(requests.size());
    for (const auto& request : requests) {
      const Tensor* found = nullptr;
      for (const auto& t : request->inputs) {
        if (t.name == model_input.name) found = &t;
      }
      if (found == nullptr) {
        return Status(StatusCode::kInternal,
                      "batched requests disagree on input '" + model_input.name + "'");
      }
      parts.push_back(found);
      total_bytes += found->byte_size;
    }
    ArenaBuffer buffer = arena.Allocate(total_bytes);
    if (!buffer) {
      return Status(StatusCode::kInternal,
                    "out of host memory gathering input '" + model_input.name + "'");
    }
    size_t offset = 0;
    for (const Tensor* part : parts) {
      if (part->byte_size > 0) {
        std::memcpy(buffer->data() + offset, part->data, part->byte_size);
      }
      offset += part->byte_size;
    }
    Tensor gathered;
    gathered.name = model_input.name;
    gathered.dtype = model_input.dtype;
    const TensorSpec* input_spec = spec.FindInput(model_input.name);
    if (input_spec != nullptr && input_spec->allow_ragged_batch) {
      // Every request's elements end to end, as Triton's framework backends
      // feed a ragged input; the batch inputs say where each request's are.
      int64_t elements = 0;
      for (const Tensor* part : parts) elements += ElementCount(part->shape);
      gathered.shape = {elements};
    } else {
      gathered.shape = model_input.shape;
      if (!gathered.shape.empty()) gathered.shape[0] = batch->total_batch_size;
    }
    gathered.data = buffer->data();
    gathered.byte_size = total_bytes;
    gathered.owner = buffer;
    batch->arena_blocks.push_back(buffer);
    batch->gathered_inputs.push_back(std::move(gathered));
  }
  return AppendBatchInputs(spec, arena, batch);
}

namespace {

// Outputs the responses carry: the declared ones and the states the sequence batcher
// keeps (both then filtered per request before delivery). The rest are dropped here,
// so they need not be batch-shaped.
bool Scattered(const ModelSpec& spec, const std::string& output_name) {
  return spec.FindOutput(output_name) != nullptr || spec.IsStateOutput(output_name);
}

}  // namespace

Status ScatterOutputs(const ModelSpec& spec, Batch* batch, TensorArena* arena) {
  const auto& requests = batch->requests;
  batch->responses.clear();
  batch->responses.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    batch->responses[i] = std::make_unique<InferenceResponse>();
  }
  for (Tensor& output : batch->gathered_outputs) {
    if (output.on_host() || !Scattered(spec, output.name)) continue;
    bool host = output.dtype == DataType::kBytes;
    for (const auto& request : requests) {
      host = host || !request->KeepsOnDevice(output.name);
    }
    if (host) {
      Status status = HostTensor(output, &output, arena);
      if (!status.ok()) return status;
    }
  }
  const bool whole = requests.size() == 1 || spec.max_batch_size == 0;
  for (const Tensor& output : batch->gathered_outputs) {
    std::vector<size_t> offsets;
    std::vector<Shape> shapes;
    const BatchOutputSpec* batch_output = spec.FindBatchOutput(output.name);
    if (batch_output != nullptr && spec.FindOutput(output.name) != nullptr) {
      Status status =
          ScatterShapes(spec, *batch_output, output, *batch, &shapes, &offsets);
      if (!status.ok()) return status;
    } else if (whole) {
      batch->responses[0]->outputs.push_back(output);
      continue;
    } else {
      if (!Scattered(spec, output.name)) continue;
      Status status = BatchSlices(output, *batch, &offsets);
      if (!status.ok()) return status;
      for (const auto& request : requests) {
        shapes.push_back(output.shape);
        shapes.back()[0] = request->batch_size;
      }
    }
    for (size_t i = 0; i < requests.size(); ++i) {
      Tensor slice;
      slice.name = output.name;
      slice.dtype = output.dtype;
      slice.shape = std::move(shapes[i]);
      slice.data = output.data + offsets[i];
      slice.byte_size = offsets[i + 1] - offsets[i];
      slice.owner = output.owner;
      slice.memory_type = output.memory_type;
      slice.device_id = output.device_id;
      batch->responses[i]->outputs.push_back(std::move(slice));
    }
  }
  return Status::Ok();
}

}  // namespace tritonx
