#include "request_builder.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "request_parameters.h"

namespace tritonx {
namespace {

// How Triton's JSON reader types the elements of each datatype, and what it says
// when an element is of another JSON type ("attempt to access ...").
enum class Kind { kBool, kFloat, kInt, kUint, kBytes };

Kind KindOf(DataType dtype) {
  switch (dtype) {
    case DataType::kBool:
      return Kind::kBool;
    case DataType::kFp32:
    case DataType::kFp64:
      return Kind::kFloat;
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32:
    case DataType::kInt64:
      return Kind::kInt;
    case DataType::kBytes:
      return Kind::kBytes;
    default:
      return Kind::kUint;
  }
}

const char* AccessMessage(Kind kind) {
  switch (kind) {
    case Kind::kBool:
      return "JSON non-boolean as boolean";
    case Kind::kFloat:
      return "JSON non-number as double";
    case Kind::kInt:
      return "JSON non-signed-integer as signed-integer";
    case Kind::kUint:
      return "JSON non-unsigned-integer as unsigned-integer";
    default:
      return "JSON non-string as string";
  }
}

using JType = JsonScalar::Type;

bool IsInteger(const JsonScalar& v) {
  return v.type == JType::kInt || v.type == JType::kUint;
}

bool Accepts(Kind kind, const JsonScalar& v) {
  switch (kind) {
    case Kind::kBool:
      return v.type == JType::kBool;
    case Kind::kFloat:
      return IsInteger(v) || v.type == JType::kDouble;
    case Kind::kInt:
    case Kind::kUint:
      return IsInteger(v);
    default:
      return v.type == JType::kString;
  }
}

template <typename T>
void Pack(const std::vector<JsonScalar>& leaves, std::string* out) {
  out->resize(leaves.size() * sizeof(T));
  char* dst = out->data();
  for (const JsonScalar& v : leaves) {
    T elem;
    if constexpr (std::is_floating_point_v<T>) {
      elem = v.type == JType::kDouble ? static_cast<T>(v.d)
             : v.type == JType::kUint ? static_cast<T>(v.u)
                                      : static_cast<T>(v.i);
    } else if (v.type == JType::kUint) {
      // A C-style cast like Triton's: integers wrap.
      elem = static_cast<T>(v.u);
    } else {
      elem = static_cast<T>(v.i);
    }
    std::memcpy(dst, &elem, sizeof(T));
    dst += sizeof(T);
  }
}

// Whether a shape of non-negative dims has a zero dim: it has no elements, even when
// the dims before the zero overflow a count taken in order (CheckedElementCount).
bool HasZeroDim(const Shape& shape) {
  bool zero = false;
  for (int64_t dim : shape) {
    if (dim < 0) return false;
    zero = zero || dim == 0;
  }
  return zero;
}

}  // namespace

Status InvalidSurrogate() {
  return InvalidArgError(
      "failed to parse the request JSON buffer: The surrogate pair in string is "
      "invalid.");
}

Status ParseDataType(std::string_view datatype, const std::string& input,
                     WireProtocol protocol, DataType* out) {
  *out = DataTypeFromName(datatype);
  if (*out != DataType::kInvalid) return Status::Ok();
  if (protocol == WireProtocol::kNone) {
    return InvalidArgError("invalid datatype '" + std::string(datatype) +
                           "' for input '" + input + "'");
  }
  // Triton's HTTP frontend needs the type to read JSON `data` and refuses it there
  // (JsonDataToWire, at its point in the reading); otherwise (gRPC, HTTP binary or
  // shared memory data, or no element to read) the unknown type reaches its core,
  // whose request validation words it ("data-type is '<invalid>'", with the request
  // id): ValidateRequest does the same here.
  return Status::Ok();
}

Status CheckTransactionPolicy(const ModelSpec& spec, WireProtocol protocol) {
  if (!spec.decoupled) return Status::Ok();
  // One response per call cannot carry a stream (Triton sends gRPC clients to
  // ModelStreamInfer, HTTP ones to generate_stream).
  if (protocol == WireProtocol::kHttp) {
    return Status(
        StatusCode::kUnsupported,
        "HTTP end point doesn't support models with decoupled transaction policy");
  }
  if (protocol == WireProtocol::kGrpc) {
    return Status(
        StatusCode::kUnsupported,
        "ModelInfer RPC doesn't support models with decoupled transaction policy");
  }
  return Status::Ok();
}

Status InputAlreadyExists(const std::string& request_id, const std::string& input) {
  InferenceRequest named;  // the prefix is the core's, from the id alone
  named.id = request_id;
  return InvalidArgError(RequestPrefix(named) + "input '" + input +
                         "' already exists in request");
}

Status DeduceRawInput(const ModelSpec& spec, const char* body, size_t body_size,
                      const std::shared_ptr<const void>& owner, InferenceRequest* out) {
  // A raw request has no id, and Triton's core calls its one input "raw_input"
  // until it maps it onto the config's input.
  const std::string prefix = "[request id: <id_unknown>] ";
  if (spec.inputs.size() != 1) {
    return InvalidArgError(prefix +
                           "Raw request must only have 1 input (found 1) to be "
                           "deduced but got " +
                           std::to_string(spec.inputs.size()) + " inputs in '" +
                           spec.name + "' model configuration");
  }
  const TensorSpec& input = spec.inputs[0];
  Tensor tensor;
  tensor.name = input.name;
  tensor.dtype = input.dtype;
  if (spec.max_batch_size > 0) tensor.shape.push_back(1);
  int variable = -1;
  int64_t fixed = 1;
  for (int64_t dim : input.dims) {
    if (dim < 0) {
      if (variable >= 0) {
        return InvalidArgError(prefix + "The shape of the raw input '" + input.name +
                               "' can not be deduced because there are more than "
                               "one variable-sized dimension");
      }
      variable = static_cast<int>(tensor.shape.size());
    } else {
      fixed *= dim;
    }
    tensor.shape.push_back(dim);
  }
  if (input.dtype == DataType::kBytes) {
    if (variable >= 0 || fixed != 1) {
      return InvalidArgError(prefix + "For BYTE datatype raw input '" + input.name +
                             "', the model must have input shape [1]");
    }
    // One element: the whole body, in the length-prefixed wire form.
    auto buffer = std::make_shared<std::string>();
    buffer->reserve(body_size + 4);
    AppendBytesElement(buffer.get(), body, body_size);
    tensor.data = buffer->data();
    tensor.byte_size = buffer->size();
    tensor.owner = std::move(buffer);
    out->inputs.push_back(std::move(tensor));
    return Status::Ok();
  }
  const auto item = static_cast<int64_t>(DataTypeByteSize(input.dtype));
  if (variable >= 0) {
    // Whole elements only, as Triton divides; a zero-sized dim leaves none.
    const int64_t per_row = fixed * item;
    tensor.shape[variable] =
        per_row > 0 ? static_cast<int64_t>(body_size) / per_row : int64_t{0};
  }
  // The shape comes from the config, so the size is the first thing that can be
  // wrong, and Triton reports it under the raw name.
  int64_t elements = 0;
  if (CheckedElementCount(tensor.shape, &elements) == ShapeCount::kOk &&
      elements <= std::numeric_limits<int64_t>::max() / std::max<int64_t>(item, 1) &&
      elements * item != static_cast<int64_t>(body_size)) {
    return InputByteSizeMismatch(prefix, "raw_input", "'" + spec.name + "'",
                                 elements * item, body_size);
  }
  tensor.data = body;
  tensor.byte_size = body_size;
  tensor.owner = owner;
  out->inputs.push_back(std::move(tensor));
  return Status::Ok();
}

RequestBuilder::RequestBuilder(InferenceRequest* out, WireProtocol protocol,
                               std::string model_name, const SharedMemoryRegistry* shm)
    : out_(out), protocol_(protocol), model_name_(std::move(model_name)), shm_(shm) {
  out_->protocol = protocol;
}

Status RequestBuilder::ResolveShm(const ShmReference& ref, ShmUse use,
                                  ShmSpan* span) const {
  if (shm_ == nullptr || !shm_->allowed()) return ShmDisallowed();
  return shm_->Resolve(ref.region, ref.offset, ref.byte_size, span, use);
}

Status RequestBuilder::AddInput(InputDescription input) {
  // Triton adds the input (refusing a second of the same name) before it looks at
  // where the input's data is.
  for (const Tensor& added : out_->inputs) {
    if (added.name == input.name) return InputAlreadyExists(out_->id, input.name);
  }
  Tensor tensor;
  tensor.name = std::move(input.name);
  tensor.shape = std::move(input.shape);
  // The region first (Triton resolves it while reading the tensor's parameters).
  if (input.source == InputDescription::Source::kSharedMemory) {
    ShmSpan span;
    Status status = ResolveShm(input.shm, ShmUse::kRead, &span);
    if (!status.ok()) return status;
    // Zero copy: the tensor holds the mapping until the request is freed.
    tensor.data = span.data;
    tensor.byte_size = span.byte_size;
    tensor.owner = std::move(span.owner);
    tensor.aliased = true;  // the client's region: not the model's to write
  }
  Status status = ParseDataType(input.datatype, tensor.name, protocol_, &tensor.dtype);
  if (!status.ok()) return status;
  switch (input.source) {
    case InputDescription::Source::kSharedMemory:
      break;
    case InputDescription::Source::kBytes:
      tensor.data = input.data;
      tensor.byte_size = input.byte_size;
      tensor.owner = std::move(input.owner);
      break;
    case InputDescription::Source::kJson: {
      auto buffer = std::make_shared<std::string>();
      status =
          JsonDataToWire(tensor.name, tensor.dtype, tensor.shape, input, buffer.get());
      if (!status.ok()) return status;
      tensor.data = buffer->data();
      tensor.byte_size = buffer->size();
      tensor.owner = std::move(buffer);
      break;
    }
    case InputDescription::Source::kMissing:
      // gRPC: neither raw nor typed contents (FP16/BF16 have no typed form either).
      return InvalidArgError("unable to find data for input tensor '" + tensor.name +
                             "' for model '" + model_name_ + "' in request.");
  }
  out_->inputs.push_back(std::move(tensor));
  return Status::Ok();
}

Status JsonDataToWire(const std::string& name, DataType dtype, const Shape& shape,
                      const InputDescription& input, std::string* out) {
  int64_t expected = 0;
  const bool counted = CheckedElementCount(shape, &expected) == ShapeCount::kOk;
  // Triton sizes JSON `data` by the shape's element count, which it takes to be 0
  // for a shape without dims: then it reads nothing (not even the type), and the
  // core words whatever is wrong with the shape. A zero dim makes the count 0 even
  // after dims whose product overflows. (A product of 2^64 without one, which
  // Triton's wrapping count also takes to be 0, is refused: diff_allowlist.py.)
  if (shape.empty() || HasZeroDim(shape)) return Status::Ok();
  // Then Triton's order: `data` is an array, BYTES elements are strings, the type
  // can be read from JSON at all, then element by element.
  if (!input.json_is_array) {
    return InternalError(
        "Unable to parse 'data': attempt to access JSON non-array as array");
  }
  const Kind kind = KindOf(dtype);
  const std::vector<JsonScalar>& leaves = input.json;
  if (dtype == DataType::kBytes) {
    for (const JsonScalar& v : leaves) {
      if (!Accepts(kind, v)) {
        return InternalError(
            std::string("Unable to parse JSON bytes array: attempt to access ") +
            AccessMessage(kind));
      }
    }
  }
  if (dtype == DataType::kFp16 || dtype == DataType::kBf16) {
    return InvalidArgError(
        "receiving " + std::string(DataTypeName(dtype)) +
        " data via JSON is not supported. Please use the binary data format "
        "for input " +
        name);
  }
  if (dtype == DataType::kInvalid) {
    return InvalidArgError("invalid datatype for input " + name);
  }
  const Status shape_mismatch = InternalError(
      "Unable to parse 'data': Shape does not match true shape of 'data' field");
  // BYTES elements are counted by the core ("expected N string elements ..."),
  // not here: Triton sizes BYTES data by its strings.
  const bool count_here = dtype != DataType::kBytes;
  // Element by element, as Triton reads them: one past the shape's count is refused
  // before its type is looked at, each one before it of the wrong type first.
  for (size_t i = 0; i < leaves.size(); ++i) {
    const JsonScalar& v = leaves[i];
    if (count_here && counted && i >= static_cast<uint64_t>(expected)) {
      return shape_mismatch;
    }
    const bool negative_unsigned =
        kind == Kind::kUint && v.type == JType::kInt && v.i < 0;
    if (!Accepts(kind, v) || negative_unsigned) {
      // Triton's BYTES reader has words of its own.
      return InternalError(std::string(dtype == DataType::kBytes
                                           ? "Unable to parse JSON bytes array: "
                                           : "Unable to parse 'data': ") +
                           "attempt to access " + AccessMessage(kind));
    }
  }
  if (count_here && (!counted || static_cast<uint64_t>(expected) != leaves.size())) {
    return shape_mismatch;
  }
  switch (dtype) {
    case DataType::kBool:
      out->resize(leaves.size());
      for (size_t i = 0; i < leaves.size(); ++i) (*out)[i] = leaves[i].b ? 1 : 0;
      break;
    case DataType::kBytes: {
      size_t total = 0;
      for (const JsonScalar& v : leaves) total += 4 + v.text.size();
      out->reserve(total);
      for (const JsonScalar& v : leaves) {
        AppendBytesElement(out, v.text.data(), v.text.size());
      }
      break;
    }
    case DataType::kInt8:
      Pack<int8_t>(leaves, out);
      break;
    case DataType::kInt16:
      Pack<int16_t>(leaves, out);
      break;
    case DataType::kInt32:
      Pack<int32_t>(leaves, out);
      break;
    case DataType::kInt64:
      Pack<int64_t>(leaves, out);
      break;
    case DataType::kUint8:
      Pack<uint8_t>(leaves, out);
      break;
    case DataType::kUint16:
      Pack<uint16_t>(leaves, out);
      break;
    case DataType::kUint32:
      Pack<uint32_t>(leaves, out);
      break;
    case DataType::kUint64:
      Pack<uint64_t>(leaves, out);
      break;
    case DataType::kFp32:
      Pack<float>(leaves, out);
      break;
    case DataType::kFp64:
      Pack<double>(leaves, out);
      break;
    default:
      break;
  }
  return Status::Ok();
}

Status RequestBuilder::AddOutput(OutputDescription output, ShmOutputs* targets) {
  if (output.to_shm) {
    ShmOutput target;
    target.name = output.name;
    target.region = std::move(output.shm.region);
    target.offset = output.shm.offset;
    ShmReference ref{target.region, target.offset, output.shm.byte_size};
    Status status = ResolveShm(ref, ShmUse::kWrite, &target.span);
    if (!status.ok()) return status;
    // A CUDA region takes a GPU output as it is (device->device when written).
    if (target.span.device >= 0) out_->device_outputs.push_back(output.name);
    if (targets != nullptr) targets->push_back(std::move(target));
  }
  if (output.class_count > 0) {
    out_->class_counts.emplace_back(output.name, output.class_count);
  }
  out_->requested_outputs.push_back(std::move(output.name));
  return Status::Ok();
}

Status RequestBuilder::SetParameters(Parameters parameters) {
  if (parameters.empty()) return Status::Ok();
  return ApplyRequestParameters(std::move(parameters), out_);
}

}  // namespace tritonx
