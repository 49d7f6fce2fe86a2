#include "batch_inputs.h"

#include <algorithm>
#include <cstring>

namespace tritonx {
namespace {

Status SourceShape(const InferenceRequest& request, const std::string& source,
                   const Shape** shape) {
  for (const Tensor& input : request.inputs) {
    if (input.name == source) {
      *shape = &input.shape;
      return Status::Ok();
    }
  }
  // Triton's TRITONBACKEND_RequestInput fails the same way for an input the
  // request left out (optional): the batch input cannot be made.
  return Status(StatusCode::kInvalidArg,
                "[request id: " + (request.id.empty() ? "<id_unknown>" : request.id) +
                    "] batch input source '" + source + "' is not in the request");
}

template <typename T>
void Convert(const std::vector<int64_t>& values, char* out) {
  for (size_t i = 0; i < values.size(); ++i) {
    const T value = static_cast<T>(values[i]);
    std::memcpy(out + i * sizeof(T), &value, sizeof(T));
  }
}

}  // namespace

Status ComputeBatchInput(const BatchInputSpec& batch_input,
                         const std::vector<RequestPtr>& requests, Shape* shape,
                         std::vector<int64_t>* values) {
  std::vector<const Shape*> shapes(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    Status status = SourceShape(*requests[i], batch_input.source_input, &shapes[i]);
    if (!status.ok()) return status;
  }
  values->clear();
  const int64_t count = static_cast<int64_t>(requests.size());
  switch (batch_input.kind) {
    case BatchInputKind::kElementCount:
      for (const Shape* s : shapes) values->push_back(ElementCount(*s));
      *shape = {count};
      return Status::Ok();
    case BatchInputKind::kAccumulatedElementCount:
    case BatchInputKind::kAccumulatedElementCountWithZero: {
      const bool zero =
          batch_input.kind == BatchInputKind::kAccumulatedElementCountWithZero;
      if (zero) values->push_back(0);
      int64_t total = 0;
      for (const Shape* s : shapes) {
        total += ElementCount(*s);
        values->push_back(total);
      }
      *shape = {zero ? count + 1 : count};
      return Status::Ok();
    }
    case BatchInputKind::kMaxElementCountAsShape: {
      int64_t most = 0;
      for (const Shape* s : shapes) most = std::max(most, ElementCount(*s));
      values->assign(static_cast<size_t>(most), 0);
      *shape = {most};
      return Status::Ok();
    }
    case BatchInputKind::kItemShape:
    case BatchInputKind::kItemShapeFlatten: {
      int64_t items = 0;
      int64_t rank = 0;
      for (size_t i = 0; i < shapes.size(); ++i) {
        const Shape& s = *shapes[i];
        if (s.empty()) {
          // Triton assumes a batch dim here (and would read past the shape).
          return Status(StatusCode::kInvalidArg,
                        "batch input of kind BATCH_ITEM_SHAPE needs a batch dim in "
                        "source input '" +
                            batch_input.source_input + "'");
        }
        rank = static_cast<int64_t>(s.size()) - 1;
        for (int64_t item = 0; item < s[0]; ++item) {
          values->insert(values->end(), s.begin() + 1, s.end());
        }
        items += s[0];
      }
      // Triton takes the rank from the last request; validation made them equal.
      if (batch_input.kind == BatchInputKind::kItemShape) {
        *shape = {items, rank};
      } else {
        *shape = {static_cast<int64_t>(values->size())};
      }
      return Status::Ok();
    }
  }
  return Status(StatusCode::kInternal, "unsupported batch input kind");
}

Status AppendBatchInputs(const ModelSpec& spec, TensorArena& arena, Batch* batch) {
  for (const BatchInputSpec& batch_input : spec.batch_inputs) {
    if (batch_input.target_names.empty()) continue;  // nothing to feed
    Shape shape;
    std::vector<int64_t> values;
    Status status = ComputeBatchInput(batch_input, batch->requests, &shape, &values);
    if (!status.ok()) return status;
    const size_t byte_size = values.size() * DataTypeByteSize(batch_input.dtype);
    ArenaBuffer buffer = arena.Allocate(byte_size);
    if (!buffer) {
      return Status(StatusCode::kInternal,
                    "failed to allocate contiguous buffer for batch input '" +
                        batch_input.target_names.front() + "'");
    }
    if (batch_input.dtype == DataType::kFp32) {
      Convert<float>(values, buffer->data());
    } else {
      Convert<int32_t>(values, buffer->data());
    }
    for (const std::string& target : batch_input.target_names) {
      Tensor tensor;
      tensor.name = target;
      tensor.dtype = batch_input.dtype;
      tensor.shape = shape;
      tensor.data = buffer->data();
      tensor.byte_size = byte_size;
      tensor.owner = buffer;
      batch->gathered_inputs.push_back(std::move(tensor));
    }
    batch->arena_blocks.push_back(std::move(buffer));
  }
  return Status::Ok();
}

}  // namespace tritonx
