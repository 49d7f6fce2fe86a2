// The tensors the sequence batcher adds to requests: control inputs, implicit states
// and the null requests that fill empty direct slots. See sequence_batch_scheduler.h.
#include <cstring>

#include "sequence_batch_scheduler.h"
#include "tensor_memory.h"

namespace tritonx {
namespace {

template <typename T>
std::string Bytes(T value) {
  std::string out(sizeof(T), '\0');
  std::memcpy(out.data(), &value, sizeof(T));
  return out;
}

std::string LengthPrefixed(const std::string& s) {
  return Bytes(static_cast<uint32_t>(s.size())) + s;
}

// One element of the CORRID control in `dtype`. A string id given to a numeric
// CORRID is what Triton passes: the leading bytes of its serialized (length
// prefixed) form, zero padded.
std::string CorrIdBytes(DataType dtype, const InferenceRequest& request) {
  const bool string_id = !request.correlation_id_str.empty();
  if (dtype == DataType::kBytes) {
    return LengthPrefixed(string_id ? request.correlation_id_str
                                    : std::to_string(request.correlation_id));
  }
  const size_t size = DataTypeByteSize(dtype);
  if (string_id) {
    std::string raw = LengthPrefixed(request.correlation_id_str);
    raw.resize(size, '\0');
    return raw;
  }
  const uint64_t id = request.correlation_id;
  switch (dtype) {
    case DataType::kInt64:
      return Bytes(static_cast<int64_t>(id));
    case DataType::kUint32:
      return Bytes(static_cast<uint32_t>(id));
    case DataType::kInt32:
      return Bytes(static_cast<int32_t>(id));
    default:
      return Bytes(id);
  }
}

// A buffer of `bytes` from the arena, zeroed or filled with `fill` repeated.
Tensor ArenaTensor(TensorArena& arena, const std::string& name, DataType dtype,
                   Shape shape, const std::string& fill, size_t bytes) {
  ArenaBuffer buffer = arena.Allocate(bytes == 0 ? 1 : bytes);
  char* data = buffer->data();
  if (fill.empty()) {
    std::memset(data, 0, bytes);
  } else {
    for (size_t off = 0; off + fill.size() <= bytes; off += fill.size()) {
      std::memcpy(data + off, fill.data(), fill.size());
    }
  }
  Tensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = data;
  t.byte_size = bytes;
  t.owner = std::move(buffer);
  return t;
}

// Bytes of `count` zero elements: BYTES elements are empty strings (length 0).
size_t ZeroBytes(DataType dtype, int64_t count) {
  const size_t element = dtype == DataType::kBytes ? 4 : DataTypeByteSize(dtype);
  return element * static_cast<size_t>(count < 0 ? 0 : count);
}

}  // namespace

void SequenceBatchScheduler::AddControls(InferenceRequest* request, bool null_request) {
  if (config_.controls.empty()) return;
  const int64_t batch = max_batch_size_ > 0 ? request->batch_size : 1;
  // Every control element of this request, each 8-byte aligned, in one allocation.
  std::vector<std::string> values;
  values.reserve(config_.controls.size());
  size_t words = 0;
  for (const auto& control : config_.controls) {
    std::string one;
    switch (control.kind) {
      case SequenceControlKind::kStart:
        one = !null_request && (request->flags & kFlagStart) ? control.true_value
                                                             : control.false_value;
        break;
      case SequenceControlKind::kEnd:
        one = !null_request && (request->flags & kFlagEnd) ? control.true_value
                                                           : control.false_value;
        break;
      case SequenceControlKind::kReady:
        one = null_request ? control.false_value : control.true_value;
        break;
      case SequenceControlKind::kCorrId:
        one = CorrIdBytes(control.dtype, *request);
        break;
    }
    std::string all;
    all.reserve(one.size() * batch);
    for (int64_t b = 0; b < batch; ++b) all += one;
    words += (all.size() + 7) / 8;
    values.push_back(std::move(all));
  }
  auto storage = std::make_shared<std::vector<uint64_t>>(words == 0 ? 1 : words, 0);
  char* base = reinterpret_cast<char*>(storage->data());
  size_t offset = 0;
  for (size_t k = 0; k < config_.controls.size(); ++k) {
    const auto& control = config_.controls[k];
    std::memcpy(base + offset, values[k].data(), values[k].size());
    Tensor t;
    t.name = control.name;
    t.dtype = control.dtype;
    t.shape = max_batch_size_ > 0 ? Shape{batch, 1} : Shape{1};
    t.data = base + offset;
    t.byte_size = values[k].size();
    t.owner = storage;
    request->inputs.push_back(std::move(t));
    offset += (values[k].size() + 7) / 8 * 8;
  }
}

std::vector<Tensor> SequenceBatchScheduler::InitialStates(int64_t batch_size) {
  std::vector<Tensor> out;
  out.reserve(config_.states.size());
  for (const auto& state : config_.states) {
    Shape shape;
    if (max_batch_size_ > 0) shape.push_back(batch_size);
    const Shape& dims = state.has_initial ? state.initial_shape : state.dims;
    for (int64_t d : dims) shape.push_back(d < 0 ? 0 : d);
    const int64_t count = ElementCount(shape);
    if (state.has_initial) {
      const size_t bytes = state.initial_data.size() *
                           static_cast<size_t>(max_batch_size_ > 0 ? batch_size : 1);
      out.push_back(ArenaTensor(*arena_, state.input_name, state.dtype, shape,
                                state.initial_data, bytes));
    } else {
      out.push_back(ArenaTensor(*arena_, state.input_name, state.dtype, shape, "",
                                ZeroBytes(state.dtype, count)));
    }
  }
  return out;
}

void SequenceBatchScheduler::PrepareBatch(Batch& batch,
                                          const std::vector<SequencePtr>& seqs) {
  const InferenceRequest* model = nullptr;
  for (const auto& r : batch.requests) {
    if (r) {
      model = r.get();
      break;
    }
  }
  batch.total_batch_size = 0;
  const uint64_t now = NowNs();
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    RequestPtr& request = batch.requests[i];
    const bool null_request = !request;
    if (null_request) {
      // Shaped like a real request of the batch, all zeros, answered to nobody.
      request = std::make_shared<InferenceRequest>();
      request->null_request = true;
      request->model_name = model->model_name;
      request->model_version = model->model_version;
      request->batch_size = model->batch_size;
      request->shape_key = model->shape_key;
      request->spec = model->spec;
      request->enqueue_ns = now;
      for (const Tensor& input : model->inputs) {
        request->inputs.push_back(
            ArenaTensor(*arena_, input.name, input.dtype, input.shape, "",
                        input.dtype == DataType::kBytes
                            ? ZeroBytes(input.dtype, ElementCount(input.shape))
                            : input.byte_size));
      }
    }
    batch.total_batch_size += request->batch_size;
    // A rescheduled request (iterative sequences) runs again: its controls and
    // states of the last run go, this run's are added below.
    if (request->sequence_inputs_from < 0) {
      request->sequence_inputs_from = static_cast<int32_t>(request->inputs.size());
    } else {
      request->inputs.resize(static_cast<size_t>(request->sequence_inputs_from));
    }
    AddControls(request.get(), null_request);
    if (config_.states.empty()) continue;
    Sequence* seq = seqs[i].get();
    if (seq == nullptr) {
      for (Tensor& t : InitialStates(request->batch_size)) {
        request->inputs.push_back(std::move(t));
      }
      continue;
    }
    if ((request->flags & kFlagStart) || seq->state.size() != config_.states.size()) {
      seq->state = InitialStates(request->batch_size);
    }
    for (const Tensor& t : seq->state) request->inputs.push_back(t);
  }
}

void SequenceBatchScheduler::CaptureStates(Batch& batch) {
  const std::vector<SequencePtr>* running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    running = running_[batch.instance_index].get();
  }
  const auto& seqs = *running;
  for (size_t i = 0; i < batch.requests.size() && i < seqs.size(); ++i) {
    Sequence* seq = seqs[i].get();
    if (seq == nullptr || i >= batch.responses.size()) continue;
    const InferenceResponse* response = batch.responses[i].get();
    if (response == nullptr || !response->status.ok()) continue;
    if (seq->state.size() != config_.states.size()) continue;
    for (size_t k = 0; k < config_.states.size(); ++k) {
      const auto& state = config_.states[k];
      for (const Tensor& output : response->outputs) {
        if (output.name != state.output_name) continue;
        // Copied: the output's memory belongs to the response, which leaves now.
        Tensor kept = ArenaTensor(*arena_, state.input_name, output.dtype, output.shape,
                                  "", output.byte_size);
        if (!CopyTensorBytes(output, const_cast<char*>(kept.data)).ok()) break;
        seq->state[k] = std::move(kept);
        break;
      }
    }
  }
}

}  // namespace tritonx
