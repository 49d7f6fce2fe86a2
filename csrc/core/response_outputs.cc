#include "response_outputs.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

#include "tensor_memory.h"

namespace tritonx {
namespace {

Shape ResolveOutputShape(const TensorSpec& spec, const Shape& produced, bool batched) {
  // Output reshape: the backend produced `reshape`, the client sees `dims`. As in
  // Triton, the values the backend gave the reshape's -1 dims fill the -1 dims of
  // `dims`, in order. A produced shape of another rank than the reshape has no
  // such values: a -1 of `dims` then takes what the element count leaves.
  int64_t batch = batched && !produced.empty() ? produced[0] : 0;
  const size_t offset = batched ? 1 : 0;
  Shape out = spec.dims;
  if (produced.size() == spec.reshape.size() + offset) {
    std::vector<int64_t> variable;
    for (size_t i = 0; i < spec.reshape.size(); ++i) {
      if (spec.reshape[i] == -1) variable.push_back(produced[i + offset]);
    }
    size_t next = 0;
    for (int64_t& dim : out) {
      if (dim == -1 && next < variable.size()) dim = variable[next++];
    }
  } else {
    int64_t elements = ElementCount(produced);
    int64_t per_item = batched ? (batch == 0 ? 0 : elements / batch) : elements;
    int64_t known = 1;
    int wildcard = -1;
    for (size_t i = 0; i < out.size(); ++i) {
      if (out[i] == -1) {
        wildcard = static_cast<int>(i);
      } else {
        known *= out[i];
      }
    }
    if (wildcard >= 0) out[wildcard] = known == 0 ? 0 : per_item / known;
  }
  if (batched) out.insert(out.begin(), batch);
  return out;
}

// "value:index[:label]" for the `count` largest of `n` values, as Triton's
// TopkClassifications formats them (std::to_string). Ties fall as Triton's
// std::sort leaves them (not a stable sort): lower index first up to 16 values
// (insertion sort), an introsort's order beyond, which clients can observe.
template <typename T>
void TopK(const char* base, size_t n, uint32_t count,
          const std::vector<std::string>& labels, std::vector<std::string>* out) {
  std::vector<T> values(n);
  if (n != 0) std::memcpy(values.data(), base, n * sizeof(T));
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&values](size_t a, size_t b) { return values[a] > values[b]; });
  const size_t k = std::min(n, static_cast<size_t>(count));
  for (size_t i = 0; i < k; ++i) {
    const size_t index = order[i];
    std::string entry = std::to_string(values[index]) + ":" + std::to_string(index);
    if (index < labels.size() && !labels[index].empty()) entry += ":" + labels[index];
    out->push_back(std::move(entry));
  }
}

Status ClassifyItem(DataType dtype, const char* base, size_t n, uint32_t count,
                    const std::vector<std::string>& labels,
                    std::vector<std::string>* out) {
  switch (dtype) {
    case DataType::kUint8:
      TopK<uint8_t>(base, n, count, labels, out);
      break;
    case DataType::kUint16:
      TopK<uint16_t>(base, n, count, labels, out);
      break;
    case DataType::kUint32:
      TopK<uint32_t>(base, n, count, labels, out);
      break;
    case DataType::kUint64:
      TopK<uint64_t>(base, n, count, labels, out);
      break;
    case DataType::kInt8:
      TopK<int8_t>(base, n, count, labels, out);
      break;
    case DataType::kInt16:
      TopK<int16_t>(base, n, count, labels, out);
      break;
    case DataType::kInt32:
      TopK<int32_t>(base, n, count, labels, out);
      break;
    case DataType::kInt64:
      TopK<int64_t>(base, n, count, labels, out);
      break;
    case DataType::kFp32:
      TopK<float>(base, n, count, labels, out);
      break;
    case DataType::kFp64:
      TopK<double>(base, n, count, labels, out);
      break;
    default:
      return Status(StatusCode::kInvalidArg,
                    "class result not available for output due to unsupported type '" +
                        std::string(DataTypeName(dtype)) + "'");
  }
  return Status::Ok();
}

}  // namespace

Status Classify(const Tensor& produced, uint32_t count, bool batched,
                const std::vector<std::string>& labels, Tensor* result) {
  Tensor output;  // the values are read on the host
  Status host = HostTensor(produced, &output);
  if (!host.ok()) return host;
  const size_t element_size = DataTypeByteSize(output.dtype);
  if (element_size == 0 || output.dtype == DataType::kBool ||
      output.dtype == DataType::kFp16 || output.dtype == DataType::kBf16) {
    return Status(StatusCode::kInvalidArg,
                  "class result not available for output due to unsupported type '" +
                      std::string(DataTypeName(output.dtype)) + "'");
  }
  const int64_t batch = batched && !output.shape.empty() ? output.shape[0] : 1;
  const size_t elements = output.byte_size / element_size;
  const size_t per_item = batch > 0 ? elements / static_cast<size_t>(batch) : 0;
  std::vector<std::string> entries;
  for (int64_t item = 0; item < batch; ++item) {
    Status status = ClassifyItem(
        output.dtype, output.data + static_cast<size_t>(item) * per_item * element_size,
        per_item, count, labels, &entries);
    if (!status.ok()) return status;
  }
  auto buffer = std::make_shared<std::string>();
  for (const std::string& entry : entries) {
    AppendBytesElement(buffer.get(), entry.data(), entry.size());
  }
  const int64_t k =
      static_cast<int64_t>(std::min(per_item, static_cast<size_t>(count)));
  result->name = output.name;
  result->dtype = DataType::kBytes;
  result->shape = batched ? Shape{batch, k} : Shape{k};
  result->data = buffer->data();
  result->byte_size = buffer->size();
  result->owner = std::move(buffer);
  return Status::Ok();
}

Status PlaceOutputs(const InferenceRequest& request, InferenceResponse* response) {
  for (Tensor& tensor : response->outputs) {
    if (tensor.on_host() || request.KeepsOnDevice(tensor.name)) continue;
    Status status = HostTensor(tensor, &tensor);
    if (!status.ok()) return status;
  }
  return Status::Ok();
}

Status ApplyOutputSpec(const ModelSpec& spec, const InferenceRequest& request,
                       InferenceResponse* response) {
  // Keep the outputs the model declares and the request asked for (all of them when
  // it named none) in the order the model produced them, as Triton does, with output
  // reshape undone and classification applied.
  std::vector<Tensor> produced = std::move(response->outputs);
  std::vector<Tensor> kept;
  kept.reserve(produced.size());
  const bool batched = spec.max_batch_size > 0;
  for (Tensor& tensor : produced) {
    const TensorSpec* output_spec = spec.FindOutput(tensor.name);
    if (output_spec == nullptr) continue;
    const auto& wanted = request.requested_outputs;
    if (!wanted.empty() &&
        std::find(wanted.begin(), wanted.end(), tensor.name) == wanted.end()) {
      continue;
    }
    bool duplicate = false;
    for (const Tensor& other : kept) duplicate = duplicate || other.name == tensor.name;
    if (duplicate) continue;
    if (output_spec->has_reshape) {
      tensor.shape = ResolveOutputShape(*output_spec, tensor.shape, batched);
    }
    const uint32_t count = request.ClassCount(tensor.name);
    if (count > 0) {
      Tensor classes;
      Status status = Classify(tensor, count, batched, output_spec->labels, &classes);
      if (!status.ok()) return status;
      tensor = std::move(classes);
    }
    kept.push_back(std::move(tensor));
  }
  response->outputs = std::move(kept);
  return Status::Ok();
}

}  // namespace tritonx
