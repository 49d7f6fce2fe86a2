#include "model_spec.h"

#include <algorithm>
#include <string>

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

bool DimsMatch(const Shape& config_dims, const Shape& dims) {
  if (config_dims.size() != dims.size()) return false;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (config_dims[i] != -1 && config_dims[i] != dims[i]) return false;
  }
  return true;
}

// Resolves at most one -1 in `reshape` so that it covers `elements` elements.
Shape ResolveReshape(const Shape& reshape, int64_t elements) {
  Shape out = reshape;
  int64_t known = 1;
  int wildcard = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      wildcard = static_cast<int>(i);
    } else {
      known *= out[i];
    }
  }
  if (wildcard >= 0) out[wildcard] = known == 0 ? 0 : elements / known;
  return out;
}

// Triton prefixes the errors it finds while normalizing a request with its id.
std::string RequestPrefix(const InferenceRequest& request) {
  return "[request id: " + (request.id.empty() ? std::string("<id_unknown>") : request.id) +
         "] ";
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

Status ValidateRequest(const ModelSpec& spec, InferenceRequest* request) {
  const std::string model = "'" + spec.name + "'";
  const std::string prefix = RequestPrefix(*request);

  // Known inputs, no duplicates.
  for (size_t i = 0; i < request->inputs.size(); ++i) {
    const Tensor& input = request->inputs[i];
    if (spec.FindInput(input.name) == nullptr) {
      return Status(StatusCode::kInvalidArg, "unexpected inference input '" + input.name +
                                                 "' for model " + model);
    }
    for (size_t j = 0; j < i; ++j) {
      if (request->inputs[j].name == input.name) {
        return Status(StatusCode::kInvalidArg, "input '" + input.name +
                                                   "' already exists in request");
      }
    }
  }

  // Every required input present.
  std::vector<std::string> missing;
  size_t required = 0;
  for (const auto& input_spec : spec.inputs) {
    if (input_spec.optional) continue;
    ++required;
    bool found = std::any_of(request->inputs.begin(), request->inputs.end(),
                             [&](const Tensor& t) { return t.name == input_spec.name; });
    if (!found) missing.push_back(input_spec.name);
  }
  if (!missing.empty()) {
    std::vector<std::string> given;
    for (const auto& input : request->inputs) given.push_back(input.name);
    return Status(StatusCode::kInvalidArg,
                  prefix + "expected " + std::to_string(required) + " inputs but got " +
                      std::to_string(request->inputs.size()) + " inputs for model " +
                      model + ". Got input(s) " + QuotedList(given) +
                      ", but missing required input(s) " + QuotedList(missing) +
                      ". Please provide all required input(s).");
  }

  // Types, shapes and sizes.
  int64_t batch_size = spec.max_batch_size > 0 ? -1 : 1;
  std::string shape_key;
  for (const auto& input_spec : spec.inputs) {
    Tensor* input = nullptr;
    for (auto& candidate : request->inputs) {
      if (candidate.name == input_spec.name) input = &candidate;
    }
    if (input == nullptr) continue;  // an optional input left out

    if (input->dtype != input_spec.dtype) {
      return Status(StatusCode::kInvalidArg,
                    prefix + "inference input '" + input->name + "' data-type is '" +
                        std::string(DataTypeName(input->dtype)) + "', but model " +
                        model + " expects '" +
                        std::string(DataTypeName(input_spec.dtype)) + "'");
    }

    Shape dims = input->shape;
    if (spec.max_batch_size > 0) {
      if (dims.empty()) {
        return Status(StatusCode::kInvalidArg,
                      prefix + "unexpected shape for input '" + input->name +
                          "' for model " + model + ". Expected " +
                          DimsWithBatch(spec, input_spec.dims) + ", got " +
                          ShapeToString(input->shape) + ". " + kBatchDimNote);
      }
      int64_t this_batch = dims[0];
      if (batch_size == -1) {
        batch_size = this_batch;
      } else if (batch_size != this_batch) {
        return Status(StatusCode::kInvalidArg,
                      prefix + "input '" + input->name +
                          "' batch size does not match other inputs for " + model);
      }
      dims.erase(dims.begin());
    }

    if (!DimsMatch(input_spec.dims, dims)) {
      // Triton ends the sentence and appends the batch-dim note (empty for a model
      // that does not batch), hence the trailing ". " in that case.
      return Status(StatusCode::kInvalidArg,
                    prefix + "unexpected shape for input '" + input->name +
                        "' for model " + model + ". Expected " +
                        DimsWithBatch(spec, input_spec.dims) + ", got " +
                        ShapeToString(input->shape) + ". " +
                        (spec.max_batch_size > 0 ? kBatchDimNote : ""));
    }

    const int64_t elements = ElementCount(input->shape);
    if (input->dtype == DataType::kBytes) {
      int64_t found = CountBytesElements(input->data, input->byte_size);
      if (found != elements) {
        return Status(StatusCode::kInvalidArg,
                      prefix + "expected " + std::to_string(elements) +
                          " string elements for inference input '" + input->name +
                          "' for model " + model + ", got " +
                          std::to_string(found < 0 ? 0 : found));
      }
    } else {
      const uint64_t expected = static_cast<uint64_t>(elements) *
                                DataTypeByteSize(input->dtype);
      if (expected != input->byte_size) {
        return Status(StatusCode::kInvalidArg,
                      prefix + "input byte size mismatch for input '" + input->name +
                          "' for model " + model + ". Expected " +
                          std::to_string(expected) + ", got " +
                          std::to_string(input->byte_size));
      }
    }

    shape_key += input->name;
    shape_key += ShapeToString(dims);

    if (input_spec.has_reshape) {
      int64_t per_item = ElementCount(dims);
      Shape reshaped = ResolveReshape(input_spec.reshape, per_item);
      if (spec.max_batch_size > 0) reshaped.insert(reshaped.begin(), input->shape[0]);
      input->shape = std::move(reshaped);
    }
  }

  if (spec.max_batch_size > 0) {
    if (batch_size == -1) batch_size = 1;  // only optional inputs were left out
    if (batch_size > spec.max_batch_size) {
      return Status(StatusCode::kInvalidArg,
                    prefix + "inference request batch-size must be <= " +
                        std::to_string(spec.max_batch_size) + " for " + model);
    }
  }

  for (const auto& output_name : request->requested_outputs) {
    if (spec.FindOutput(output_name) == nullptr) {
      return Status(StatusCode::kInvalidArg, "unexpected inference output '" +
                                                 output_name + "' for model " + model);
    }
  }

  request->batch_size = batch_size;
  request->shape_key = std::move(shape_key);
  return Status::Ok();
}

}  // namespace tritonx
