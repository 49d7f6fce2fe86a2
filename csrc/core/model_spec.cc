#include "model_spec.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_map>

#include "tensor_memory.h"

namespace tritonx {
namespace {

std::string DimsWithBatch(const ModelSpec& spec, const Shape& dims) {
  if (spec.max_batch_size <= 0) return ShapeToString(dims);
  Shape full;
  full.reserve(dims.size() + 1);
  full.push_back(-1);
  full.insert(full.end(), dims.begin(), dims.end());
  return ShapeToString(full);
}

// The shape the backend sees for an input given as `given` (its config dims,
// batch dim excluded) under `reshape`, as Triton does it: the values the request
// gave the config's -1 dims fill the reshape's -1 dims, in order.
Shape ResolveReshape(const Shape& reshape, const Shape& dims, const Shape& given) {
  std::vector<int64_t> variable;
  for (size_t i = 0; i < dims.size() && i < given.size(); ++i) {
    if (dims[i] == -1) variable.push_back(given[i]);
  }
  Shape out = reshape;
  size_t next = 0;
  int64_t known = 1;
  int64_t* left = nullptr;  // a -1 the request gave no value for
  for (int64_t& dim : out) {
    if (dim == -1 && next < variable.size()) dim = variable[next++];
    if (dim == -1) {
      left = &dim;
    } else {
      known *= dim;
    }
  }
  // A reshape with more -1 dims than `dims` (Triton's validation refuses that
  // config): the element count fills one, so no -1 ever reaches the backend.
  if (left != nullptr) *left = known == 0 ? 0 : ElementCount(given) / known;
  return out;
}

constexpr const char* kBatchDimNote =
    "NOTE: Setting a non-zero max_batch_size in the model config requires a batch "
    "dimension to be prepended to each input shape. If you want to specify the full "
    "shape including the batch dim in your input dims config, try setting "
    "max_batch_size to zero. See the model configuration docs for more info on "
    "max_batch_size.";

std::string QuotedList(const std::vector<std::string>& names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ",";
    out += "'" + names[i] + "'";
  }
  return out + "]";
}

Tensor* FindTensor(InferenceRequest& request, const std::string& name) {
  for (auto& candidate : request.inputs) {
    if (candidate.name == name) return &candidate;
  }
  return nullptr;
}

enum class DimsMatch { kOk, kWildcard, kMismatch };

// Triton's shape check: walking the dims in order, a -1 from the client
// ("unspecified") is reported before a mismatch found further on.
DimsMatch MatchDims(const Shape& config_dims, const Shape& dims) {
  if (config_dims.size() != dims.size()) return DimsMatch::kMismatch;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == -1) return DimsMatch::kWildcard;
    if (config_dims[i] != -1 && config_dims[i] != dims[i]) return DimsMatch::kMismatch;
  }
  return DimsMatch::kOk;
}

// Walks a BYTES input's length-prefixed elements as Triton does, with its words
// for a cut length indicator, an element past the shape's count (at once), too few
// (a cut element counts), and cut string data when the count was right (the one
// message without the request prefix, as there).
Status CheckBytesInput(const Tensor& input, int64_t elements, const std::string& prefix,
                       const std::string& model) {
  const char* at = input.data;
  size_t left = input.data == nullptr ? 0 : input.byte_size;
  int64_t found = 0;
  Status cut = Status::Ok();
  while (left > 0) {
    if (left < sizeof(uint32_t)) {
      return Status(StatusCode::kInvalidArg,
                    prefix +
                        "incomplete string length indicator for inference input '" +
                        input.name + "' for model " + model +
                        ", expecting 4 bytes but only " + std::to_string(left) +
                        " bytes available. Please make sure the string length "
                        "indicator is in one buffer.");
    }
    uint32_t length = 0;
    std::memcpy(&length, at, sizeof(length));
    if (++found > elements) {  // Triton stops at the first element too many
      return Status(StatusCode::kInvalidArg,
                    prefix + "unexpected number of string elements " +
                        std::to_string(found) + " for inference input '" + input.name +
                        "' for model " + model + ", expecting " +
                        std::to_string(elements));
    }
    at += sizeof(length);
    left -= sizeof(length);
    if (left < length) {
      // Triton's walk takes a cut element as the last one and counts it; the cut
      // itself is only reported (later, by the reader of the strings) when the
      // count was right.
      cut = Status(StatusCode::kInvalidArg,
                   "incomplete string data for inference input '" + input.name +
                       "', expecting string of length " + std::to_string(length) +
                       " but only " + std::to_string(left) + " bytes available");
      break;
    }
    at += length;
    left -= length;
  }
  if (found != elements) {
    return Status(StatusCode::kInvalidArg,
                  prefix + "expected " + std::to_string(elements) +
                      " string elements for inference input '" + input.name +
                      "' for model " + model + ", got " + std::to_string(found));
  }
  return cut;
}

// Checks the input's data against its shape with overflow-safe arithmetic and
// Triton's messages. Triton counts a batching model's zero batch as "no batch
// dim" (`dims` alone), which is what its byte-size message then reports.
Status CheckInputSize(const ModelSpec& spec, const Tensor& input, const Shape& dims,
                      int64_t batch_size, const std::string& prefix,
                      const std::string& model) {
  const Shape& counted =
      (spec.max_batch_size > 0 && batch_size == 0) ? dims : input.shape;
  const bool is_bytes = input.dtype == DataType::kBytes;
  const std::string too_big = std::string(is_bytes ? "element count" : "byte size") +
                              " for tensor '" + input.name +
                              "' exceeds maximum size of " +
                              std::to_string(std::numeric_limits<int64_t>::max());
  int64_t elements = 0;
  switch (CheckedElementCount(counted, &elements)) {
    case ShapeCount::kOk:
      break;
    case ShapeCount::kInvalidDim:
      return Status(StatusCode::kInvalidArg,
                    "tensor '" + input.name + "' contains an invalid dimension " +
                        (is_bytes ? "in shape " : "") + ShapeToString(counted));
    case ShapeCount::kOverflow:
      return Status(StatusCode::kInvalidArg, too_big);
  }

  if (is_bytes) return CheckBytesInput(input, elements, prefix, model);
  const auto item_size = static_cast<int64_t>(DataTypeByteSize(input.dtype));
  if (item_size > 0 && elements > std::numeric_limits<int64_t>::max() / item_size) {
    return Status(StatusCode::kInvalidArg, too_big);
  }
  const int64_t expected = elements * item_size;
  if (input.byte_size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      static_cast<int64_t>(input.byte_size) != expected) {
    return InputByteSizeMismatch(prefix, input.name, model, expected, input.byte_size);
  }
  return Status::Ok();
}

// The request's inputs (indexes) in the order Triton 2.51 walks them: its own hash
// map of them by name, libstdc++'s unordered_map (as here) filled in request order.
// Where several inputs are wrong, the one Triton names is the first in this order.
std::vector<size_t> TritonInputOrder(const InferenceRequest& request) {
  std::unordered_map<std::string, size_t> names;
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    names.emplace(request.inputs[i].name, i);
  }
  std::vector<size_t> order;
  order.reserve(names.size());
  for (const auto& entry : names) order.push_back(entry.second);
  return order;
}

// Triton 2.51's answer to a request with too few or too many inputs, word for word:
// the given names in its order (TritonInputOrder), the missing ones in config order;
// an empty missing list prints as "]" there.
Status InputCountMismatch(const ModelSpec& spec, const InferenceRequest& request,
                          const std::string& prefix, size_t required,
                          const std::vector<std::string>& missing) {
  std::vector<std::string> given;
  for (size_t index : TritonInputOrder(request)) {
    given.push_back(request.inputs[index].name);
  }
  const std::string missing_text = missing.empty() ? "]" : QuotedList(missing);
  const std::string expected = required == spec.inputs.size()
                                   ? std::to_string(required) + " inputs"
                                   : "number of inputs between " +
                                         std::to_string(required) + " and " +
                                         std::to_string(spec.inputs.size());
  return Status(StatusCode::kInvalidArg,
                prefix + "expected " + expected + " but got " +
                    std::to_string(request.inputs.size()) + " inputs for model '" +
                    spec.name + "'. Got input(s) " + QuotedList(given) +
                    ", but missing required input(s) " + missing_text +
                    ". Please provide all required input(s).");
}

}  // namespace

const TensorSpec* ModelSpec::FindInput(const std::string& input_name) const {
  for (const auto& input : inputs) {
    if (input.name == input_name) return &input;
  }
  return nullptr;
}

const TensorSpec* ModelSpec::FindOutput(const std::string& output_name) const {
  for (const auto& output : outputs) {
    if (output.name == output_name) return &output;
  }
  return nullptr;
}

bool ModelSpec::IsStateOutput(const std::string& output_name) const {
  return std::find(state_outputs.begin(), state_outputs.end(), output_name) !=
         state_outputs.end();
}

const BatchOutputSpec* ModelSpec::FindBatchOutput(
    const std::string& output_name) const {
  for (const auto& batch_output : batch_outputs) {
    for (const auto& target : batch_output.target_names) {
      if (target == output_name) return &batch_output;
    }
  }
  return nullptr;
}

bool ModelSpec::HasRaggedBatching() const {
  if (!batch_inputs.empty()) return true;
  return std::any_of(inputs.begin(), inputs.end(),
                     [](const TensorSpec& input) { return input.allow_ragged_batch; });
}

Status ValidateRequest(const ModelSpec& spec, InferenceRequest* request) {
  const std::string model = "'" + spec.name + "'";
  const std::string prefix = RequestPrefix(*request);

  // No duplicates: Triton refuses one as each input is added, before anything else.
  for (size_t i = 0; i < request->inputs.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (request->inputs[j].name == request->inputs[i].name) {
        return Status(StatusCode::kInvalidArg, prefix + "input '" +
                                                   request->inputs[i].name +
                                                   "' already exists in request");
      }
    }
  }
  for (Tensor& input : request->inputs) {
    if (!input.on_host()) {
      // Backends, batching, the cache key and stub processes read inputs on the
      // host: a GPU input (a BLS call passing on a device tensor) is copied once.
      Status status = HostTensor(input, &input);
      if (!status.ok()) return status;
    }
  }

  // The requested outputs first (Triton validates them before any input), without
  // the request prefix, as there. Triton holds them in a std::set: of several
  // unknown ones it names the least (bytewise, as std::string compares).
  const std::string* unknown_output = nullptr;
  for (const auto& output_name : request->requested_outputs) {
    if (spec.FindOutput(output_name) == nullptr &&
        (unknown_output == nullptr || output_name < *unknown_output)) {
      unknown_output = &output_name;
    }
  }
  if (unknown_output != nullptr) {
    return Status(
        StatusCode::kInvalidArg,
        "unexpected inference output '" + *unknown_output + "' for model " + model);
  }

  // Then the number of inputs (Triton's first check of them).
  std::vector<std::string> missing;
  size_t required = 0;
  for (const auto& input_spec : spec.inputs) {
    if (input_spec.optional) continue;
    ++required;
    if (FindTensor(*request, input_spec.name) == nullptr) {
      missing.push_back(input_spec.name);
    }
  }
  const size_t count = request->inputs.size();
  if (count > spec.inputs.size() || count < required) {
    return InputCountMismatch(spec, *request, prefix, required, missing);
  }

  // Then one walk over the inputs, as Triton's: each name must be the model's and,
  // for a batching model, dim 0 of each the same (the batch size), before any
  // input's shape is looked at. The walk goes in request order; if it fails, again
  // in Triton's order, whose first failure is the one Triton reports.
  int64_t batch_size = 1;
  auto walk = [&](const Tensor& input, bool* have_batch) -> Status {
    if (spec.FindInput(input.name) == nullptr) {
      return Status(StatusCode::kInvalidArg, "unexpected inference input '" +
                                                 input.name + "' for model " + model);
    }
    if (spec.max_batch_size <= 0) return Status::Ok();
    if (input.shape.empty()) {
      return Status(StatusCode::kInvalidArg,
                    prefix + "input '" + input.name +
                        "' has no shape but model requires batch dimension for " +
                        model);
    }
    if (!*have_batch) {
      batch_size = input.shape[0];
      *have_batch = true;
    } else if (input.shape[0] != batch_size) {
      return Status(StatusCode::kInvalidArg,
                    prefix + "input '" + input.name +
                        "' batch size does not match other inputs for " + model);
    }
    return Status::Ok();
  };
  bool have_batch = false;
  for (const Tensor& input : request->inputs) {
    if (walk(input, &have_batch).ok()) continue;
    have_batch = false;
    for (size_t index : TritonInputOrder(*request)) {
      Status status = walk(request->inputs[index], &have_batch);
      if (!status.ok()) return status;
    }
  }
  if (spec.max_batch_size > 0 && batch_size > spec.max_batch_size) {
    return Status(StatusCode::kInvalidArg,
                  prefix + "inference request batch-size must be <= " +
                      std::to_string(spec.max_batch_size) + " for " + model);
  }

  // Types, shapes and sizes: every input checked first (in config order, cheap),
  // then reshaped and keyed. A failure is reported for the input Triton 2.51 finds
  // first (TritonInputOrder).
  auto check = [&](const TensorSpec& input_spec, const Tensor* input) -> Status {
    if (input->dtype != input_spec.dtype) {
      return Status(StatusCode::kInvalidArg,
                    prefix + "inference input '" + input->name + "' data-type is '" +
                        (input->dtype == DataType::kInvalid
                             ? std::string("<invalid>")  // a name no type has
                             : std::string(DataTypeName(input->dtype))) +
                        "', but model " + model + " expects '" +
                        std::string(DataTypeName(input_spec.dtype)) + "'");
    }

    Shape dims = input->shape;
    if (spec.max_batch_size > 0) dims.erase(dims.begin());

    switch (MatchDims(input_spec.dims, dims)) {
      case DimsMatch::kOk:
        break;
      case DimsMatch::kWildcard:
        return Status(StatusCode::kInvalidArg,
                      prefix + "All input dimensions should be specified for input '" +
                          input->name + "' for model " + model + ", got " +
                          ShapeToString(input->shape));
      case DimsMatch::kMismatch:
        // Triton ends the sentence and appends the batch-dim note (empty for a
        // model that does not batch), hence the trailing ". " in that case.
        return Status(StatusCode::kInvalidArg,
                      prefix + "unexpected shape for input '" + input->name +
                          "' for model " + model + ". Expected " +
                          DimsWithBatch(spec, input_spec.dims) + ", got " +
                          ShapeToString(input->shape) + ". " +
                          (spec.max_batch_size > 0 ? kBatchDimNote : ""));
    }

    return CheckInputSize(spec, *input, dims, batch_size, prefix, model);
  };
  for (const auto& input_spec : spec.inputs) {
    const Tensor* input = FindTensor(*request, input_spec.name);
    if (input == nullptr) continue;  // an optional input left out
    if (check(input_spec, input).ok()) continue;
    for (size_t index : TritonInputOrder(*request)) {
      const Tensor& named = request->inputs[index];
      Status status = check(*spec.FindInput(named.name), &named);
      if (!status.ok()) return status;
    }
  }
  // Triton does not look for a required input left out when the count is right:
  // the request passes its checks and reaches the model. tritonx refuses it there,
  // after them, in the count's words.
  if (!missing.empty()) {
    return InputCountMismatch(spec, *request, prefix, required, missing);
  }
  std::string shape_key;
  for (const auto& input_spec : spec.inputs) {
    Tensor* input = FindTensor(*request, input_spec.name);
    if (input == nullptr) continue;
    Shape dims = input->shape;
    if (spec.max_batch_size > 0) dims.erase(dims.begin());
    // A ragged input takes no part in the batcher's equal-shape check (Triton's
    // enforce_equal_shape_tensors leaves it out).
    if (!input_spec.allow_ragged_batch) {
      shape_key += input->name;
      shape_key += ShapeToString(dims);
    }

    if (input_spec.has_reshape) {
      Shape reshaped = ResolveReshape(input_spec.reshape, input_spec.dims, dims);
      if (spec.max_batch_size > 0) reshaped.insert(reshaped.begin(), input->shape[0]);
      input->shape = std::move(reshaped);
    }
  }

  // A zero batch whose data happened to match one item: Triton would run it
  // with the batch dim silently dropped (and its Python stub dies on it). Refused.
  if (spec.max_batch_size > 0 && batch_size == 0) {
    return Status(StatusCode::kInvalidArg,
                  prefix + "inference request batch-size must be >= 1 for " + model);
  }

  request->batch_size = batch_size;
  request->shape_key = std::move(shape_key);
  return Status::Ok();
}

std::string RequestPrefix(const InferenceRequest& request) {
  return "[request id: " +
         (request.id.empty() ? std::string("<id_unknown>") : request.id) + "] ";
}

Status InputByteSizeMismatch(const std::string& prefix, const std::string& input,
                             const std::string& model, int64_t expected, uint64_t got) {
  return Status(StatusCode::kInvalidArg,
                prefix + "input byte size mismatch for input '" + input +
                    "' for model " + model + ". Expected " + std::to_string(expected) +
                    ", got " + std::to_string(got));
}

}  // namespace tritonx
