#include "batch_io.h"

#include <cstring>

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

}  // namespace

Status GatherInputs(const ModelSpec& spec, TensorArena& arena, Batch* batch,
                    bool copy_single) {
  batch->gathered_inputs.clear();
  const auto& requests = batch->requests;
  if (requests.empty()) return Status::Ok();
  const InferenceRequest& first = *requests.front();
  if (requests.size() == 1) {
    batch->gathered_inputs = first.inputs;
    if (!copy_single) return Status::Ok();
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
    gathered.shape = model_input.shape;
    if (!gathered.shape.empty()) gathered.shape[0] = batch->total_batch_size;
    gathered.data = buffer->data();
    gathered.byte_size = total_bytes;
    gathered.owner = buffer;
    batch->arena_blocks.push_back(buffer);
    batch->gathered_inputs.push_back(std::move(gathered));
  }
  (void)spec;
  return Status::Ok();
}

Status ScatterOutputs(const ModelSpec& spec, Batch* batch, TensorArena* arena) {
  const auto& requests = batch->requests;
  batch->responses.clear();
  batch->responses.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    batch->responses[i] = std::make_unique<InferenceResponse>();
  }
  for (Tensor& output : batch->gathered_outputs) {
    if (output.on_host() || spec.FindOutput(output.name) == nullptr) continue;
    bool host = output.dtype == DataType::kBytes;
    for (const auto& request : requests) {
      host = host || !request->KeepsOnDevice(output.name);
    }
    if (host) {
      Status status = HostTensor(output, &output, arena);
      if (!status.ok()) return status;
    }
  }
  if (requests.size() == 1 || spec.max_batch_size == 0) {
    batch->responses[0]->outputs = batch->gathered_outputs;
    return Status::Ok();
  }
  const int64_t total = batch->total_batch_size;
  for (const Tensor& output : batch->gathered_outputs) {
    // Outputs the model does not declare are dropped from the responses anyway; they
    // need not be batch-shaped.
    if (spec.FindOutput(output.name) == nullptr) continue;
    if (output.shape.empty() || output.shape[0] != total) {
      return Status(StatusCode::kInternal, "output '" + output.name + "' has shape " +
                                               ShapeToString(output.shape) +
                                               ", expected batch dim " +
                                               std::to_string(total));
    }
    const int64_t elements = ElementCount(output.shape);
    const int64_t per_item = total == 0 ? 0 : elements / total;
    std::vector<size_t> offsets;
    if (output.dtype == DataType::kBytes) {
      std::vector<int64_t> marks;
      int64_t item = 0;
      for (const auto& request : requests) {
        marks.push_back(item * per_item);
        item += request->batch_size;
      }
      marks.push_back(elements);
      if (!BytesOffsets(output, marks, &offsets)) {
        return Status(StatusCode::kInternal,
                      "malformed BYTES output '" + output.name + "'");
      }
    } else {
      const size_t item_bytes =
          static_cast<size_t>(per_item) * DataTypeByteSize(output.dtype);
      size_t offset = 0;
      for (const auto& request : requests) {
        offsets.push_back(offset);
        offset += item_bytes * static_cast<size_t>(request->batch_size);
      }
      offsets.push_back(offset);
    }
    for (size_t i = 0; i < requests.size(); ++i) {
      Tensor slice;
      slice.name = output.name;
      slice.dtype = output.dtype;
      slice.shape = output.shape;
      slice.shape[0] = requests[i]->batch_size;
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
