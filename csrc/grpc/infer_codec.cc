#include "infer_codec.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "core/request_parameters.h"
#include "health.pb.h"

namespace tritonx {
namespace grpcfe {
namespace {

using inference::InferParameter;
using inference::InferTensorContents;
using inference::ModelInferRequest;

// Packs a repeated field of wire values into the tensor's element type. The
// wire type may be wider (INT8 travels as int32): only the low bytes are kept,
// which on a little-endian host is what a narrowing cast produces.
template <typename Elem, typename Field>
std::string PackTyped(const Field& values) {
  std::string out(static_cast<size_t>(values.size()) * sizeof(Elem), '\0');
  char* dst = out.data();
  for (const auto& value : values) {
    Elem elem = static_cast<Elem>(value);
    std::memcpy(dst, &elem, sizeof(Elem));
    dst += sizeof(Elem);
  }
  return out;
}

std::string PackBytes(const InferTensorContents& contents) {
  size_t total = 0;
  for (const auto& element : contents.bytes_contents()) total += 4 + element.size();
  std::string out;
  out.reserve(total);
  for (const auto& element : contents.bytes_contents()) {
    const uint32_t len = static_cast<uint32_t>(element.size());
    char prefix[4];
    std::memcpy(prefix, &len, 4);
    out.append(prefix, 4);
    out.append(element);
  }
  return out;
}

// The bytes of a typed `contents` field, laid out as the raw wire form. FP16 and
// BF16 have no typed field; they come out empty and fail the size check later
// with the core's usual message.
std::string ContentsToRaw(DataType dtype, const InferTensorContents& c) {
  switch (dtype) {
    case DataType::kBool:
      return PackTyped<uint8_t>(c.bool_contents());
    case DataType::kInt8:
      return PackTyped<int8_t>(c.int_contents());
    case DataType::kInt16:
      return PackTyped<int16_t>(c.int_contents());
    case DataType::kInt32:
      return PackTyped<int32_t>(c.int_contents());
    case DataType::kInt64:
      return PackTyped<int64_t>(c.int64_contents());
    case DataType::kUint8:
      return PackTyped<uint8_t>(c.uint_contents());
    case DataType::kUint16:
      return PackTyped<uint16_t>(c.uint_contents());
    case DataType::kUint32:
      return PackTyped<uint32_t>(c.uint_contents());
    case DataType::kUint64:
      return PackTyped<uint64_t>(c.uint64_contents());
    case DataType::kFp32:
      return PackTyped<float>(c.fp32_contents());
    case DataType::kFp64:
      return PackTyped<double>(c.fp64_contents());
    case DataType::kBytes:
      return PackBytes(c);
    default:
      return std::string();
  }
}

// Classification extension: the class count an output asks for (Triton sends it as
// int64_param; 0 asks for the values as produced).
Status ClassCountOf(const InferParameter& param, uint32_t* count) {
  int64_t value = 0;
  if (param.parameter_choice_case() == InferParameter::kInt64Param) {
    value = param.int64_param();
  } else if (param.parameter_choice_case() == InferParameter::kUint64Param) {
    value = static_cast<int64_t>(std::min<uint64_t>(param.uint64_param(), UINT32_MAX));
  } else {
    return Status(StatusCode::kInvalidArg,
                  "invalid value type for 'classification' parameter, expected "
                  "int64_param");
  }
  if (value < 0) {
    return Status(StatusCode::kInvalidArg,
                  "invalid value for 'classification' parameter, expected >= 0");
  }
  *count = static_cast<uint32_t>(std::min<int64_t>(value, UINT32_MAX));
  return Status::Ok();
}

Status ConvertParameter(const std::string& key, const InferParameter& param,
                        ParameterValue* out) {
  switch (param.parameter_choice_case()) {
    case InferParameter::kBoolParam:
      *out = param.bool_param();
      return Status::Ok();
    case InferParameter::kInt64Param:
      *out = param.int64_param();
      return Status::Ok();
    case InferParameter::kUint64Param:
      *out = param.uint64_param();
      return Status::Ok();
    case InferParameter::kDoubleParam:
      *out = param.double_param();
      return Status::Ok();
    case InferParameter::kStringParam:
      *out = param.string_param();
      return Status::Ok();
    default:
      return Status(StatusCode::kInvalidArg,
                    "invalid value type for '" + key +
                        "' parameter, expected int64_param, bool_param, or "
                        "string_param.");
  }
}

void SetParameter(const ParameterValue& value, InferParameter* param) {
  std::visit(
      [param](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          param->set_bool_param(v);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          param->set_int64_param(v);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          param->set_uint64_param(v);
        } else if constexpr (std::is_same_v<T, double>) {
          param->set_double_param(v);
        } else {
          param->set_string_param(v);
        }
      },
      value);
}

bool UsesSharedMemory(
    const google::protobuf::Map<std::string, InferParameter>& params) {
  return params.find("shared_memory_region") != params.end();
}

// Triton's reading of a tensor's shared memory parameters: the region as a
// string, the byte size (required) and offset (default 0) as int64.
Status ParseShmParameters(
    const std::string& tensor,
    const google::protobuf::Map<std::string, InferParameter>& params,
    const SharedMemoryRegistry* shm, std::string* region, uint64_t* offset,
    uint64_t* byte_size) {
  if (shm == nullptr || !shm->allowed()) return ShmDisallowed();
  auto wrong_type = [&tensor](const std::string& key, const char* expected) {
    return Status(StatusCode::kInvalidArg, "invalid value type for '" + key +
                                               "' parameter for tensor '" + tensor +
                                               "', expected " + expected + ".");
  };
  const InferParameter& name = params.at("shared_memory_region");
  if (name.parameter_choice_case() != InferParameter::kStringParam) {
    return wrong_type("shared_memory_region", "string_param");
  }
  *region = name.string_param();
  auto size = params.find("shared_memory_byte_size");
  if (size == params.end()) {
    return Status(StatusCode::kInvalidArg,
                  "'shared_memory_byte_size' must be specified along with "
                  "'shared_memory_region' parameter for tensor '" +
                      tensor + "'");
  }
  if (size->second.parameter_choice_case() != InferParameter::kInt64Param) {
    return wrong_type("shared_memory_byte_size", "int64_param");
  }
  *byte_size = static_cast<uint64_t>(size->second.int64_param());
  auto at = params.find("shared_memory_offset");
  if (at != params.end()) {
    if (at->second.parameter_choice_case() != InferParameter::kInt64Param) {
      return wrong_type("shared_memory_offset", "int64_param");
    }
    *offset = static_cast<uint64_t>(at->second.int64_param());
  }
  return Status::Ok();
}

}  // namespace

bool ControlRequestParses(const std::string& method, const std::string& request) {
  using google::protobuf::Message;
  static const auto* const kPrototypes =
      new std::unordered_map<std::string, const Message*>{
          {"/grpc.health.v1.Health/Check",
           &grpc::health::v1::HealthCheckRequest::default_instance()},
#define TRITONX_CONTROL_RPC(rpc, type) \
  {"/inference.GRPCInferenceService/" #rpc, &inference::type::default_instance()}
          TRITONX_CONTROL_RPC(ServerLive, ServerLiveRequest),
          TRITONX_CONTROL_RPC(ServerReady, ServerReadyRequest),
          TRITONX_CONTROL_RPC(ModelReady, ModelReadyRequest),
          TRITONX_CONTROL_RPC(ServerMetadata, ServerMetadataRequest),
          TRITONX_CONTROL_RPC(ModelMetadata, ModelMetadataRequest),
          TRITONX_CONTROL_RPC(ModelConfig, ModelConfigRequest),
          TRITONX_CONTROL_RPC(ModelStatistics, ModelStatisticsRequest),
          TRITONX_CONTROL_RPC(RepositoryIndex, RepositoryIndexRequest),
          TRITONX_CONTROL_RPC(RepositoryModelLoad, RepositoryModelLoadRequest),
          TRITONX_CONTROL_RPC(RepositoryModelUnload, RepositoryModelUnloadRequest),
          TRITONX_CONTROL_RPC(SystemSharedMemoryStatus,
                              SystemSharedMemoryStatusRequest),
          TRITONX_CONTROL_RPC(SystemSharedMemoryRegister,
                              SystemSharedMemoryRegisterRequest),
          TRITONX_CONTROL_RPC(SystemSharedMemoryUnregister,
                              SystemSharedMemoryUnregisterRequest),
          TRITONX_CONTROL_RPC(CudaSharedMemoryStatus, CudaSharedMemoryStatusRequest),
          TRITONX_CONTROL_RPC(CudaSharedMemoryRegister,
                              CudaSharedMemoryRegisterRequest),
          TRITONX_CONTROL_RPC(CudaSharedMemoryUnregister,
                              CudaSharedMemoryUnregisterRequest),
          TRITONX_CONTROL_RPC(TraceSetting, TraceSettingRequest),
          TRITONX_CONTROL_RPC(LogSettings, LogSettingsRequest),
#undef TRITONX_CONTROL_RPC
      };
  auto it = kPrototypes->find(method);
  if (it == kPrototypes->end()) return true;
  std::unique_ptr<Message> message(it->second->New());
  return message->ParseFromString(request);
}

grpc::Status ToGrpcStatus(const Status& status) {
  grpc::StatusCode code;
  switch (status.code()) {
    case StatusCode::kOk:
      return grpc::Status::OK;
    case StatusCode::kUnknown:
      code = grpc::StatusCode::UNKNOWN;
      break;
    case StatusCode::kInternal:
      code = grpc::StatusCode::INTERNAL;
      break;
    case StatusCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case StatusCode::kInvalidArg:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case StatusCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case StatusCode::kUnsupported:
      code = grpc::StatusCode::UNIMPLEMENTED;
      break;
    case StatusCode::kAlreadyExists:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case StatusCode::kCancelled:
      code = grpc::StatusCode::CANCELLED;
      break;
    default:
      code = grpc::StatusCode::UNKNOWN;
      break;
  }
  return grpc::Status(code, status.message());
}

grpc::StatusCode GrpcCodeFromName(const std::string& name) {
  static const std::pair<const char*, grpc::StatusCode> kCodes[] = {
      {"OK", grpc::StatusCode::OK},
      {"CANCELLED", grpc::StatusCode::CANCELLED},
      {"UNKNOWN", grpc::StatusCode::UNKNOWN},
      {"INVALID_ARGUMENT", grpc::StatusCode::INVALID_ARGUMENT},
      {"DEADLINE_EXCEEDED", grpc::StatusCode::DEADLINE_EXCEEDED},
      {"NOT_FOUND", grpc::StatusCode::NOT_FOUND},
      {"ALREADY_EXISTS", grpc::StatusCode::ALREADY_EXISTS},
      {"PERMISSION_DENIED", grpc::StatusCode::PERMISSION_DENIED},
      {"RESOURCE_EXHAUSTED", grpc::StatusCode::RESOURCE_EXHAUSTED},
      {"FAILED_PRECONDITION", grpc::StatusCode::FAILED_PRECONDITION},
      {"ABORTED", grpc::StatusCode::ABORTED},
      {"OUT_OF_RANGE", grpc::StatusCode::OUT_OF_RANGE},
      {"UNIMPLEMENTED", grpc::StatusCode::UNIMPLEMENTED},
      {"INTERNAL", grpc::StatusCode::INTERNAL},
      {"UNAVAILABLE", grpc::StatusCode::UNAVAILABLE},
      {"DATA_LOSS", grpc::StatusCode::DATA_LOSS},
      {"UNAUTHENTICATED", grpc::StatusCode::UNAUTHENTICATED},
  };
  for (const auto& [code_name, code] : kCodes) {
    if (name == code_name) return code;
  }
  return grpc::StatusCode::INTERNAL;
}

Status BuildInferenceRequest(const ModelInferRequest& msg,
                             const std::shared_ptr<const void>& owner,
                             const ModelSpec* spec, InferenceRequest* out,
                             const SharedMemoryRegistry* shm, ShmOutputs* shm_outputs) {
  const int raw_count = msg.raw_input_contents_size();
  const bool use_raw = raw_count > 0;
  out->id = msg.id();
  out->inputs.reserve(static_cast<size_t>(msg.inputs_size()));

  int raw_index = 0;
  for (const auto& input : msg.inputs()) {
    const bool from_shm = UsesSharedMemory(input.parameters());
    ShmSpan span;
    if (from_shm) {
      std::string region;
      uint64_t offset = 0;
      uint64_t byte_size = 0;
      Status status = ParseShmParameters(input.name(), input.parameters(), shm, &region,
                                         &offset, &byte_size);
      if (status.ok()) status = shm->Resolve(region, offset, byte_size, &span);
      if (!status.ok()) return status;
    }
    Tensor tensor;
    tensor.name = input.name();
    tensor.dtype = DataTypeFromName(input.datatype());
    if (tensor.dtype == DataType::kInvalid) {
      // Worded like the core's datatype check, which Triton also runs here.
      const TensorSpec* input_spec = spec ? spec->FindInput(input.name()) : nullptr;
      if (spec != nullptr && input_spec == nullptr) {
        return Status(StatusCode::kInvalidArg, "unexpected inference input '" +
                                                   input.name() + "' for model '" +
                                                   msg.model_name() + "'");
      }
      std::string expects = input_spec
                                ? "', but model '" + msg.model_name() + "' expects '" +
                                      std::string(DataTypeName(input_spec->dtype)) + "'"
                                : "'";
      return Status(StatusCode::kInvalidArg, "inference input '" + input.name() +
                                                 "' data-type is '<invalid>" + expects);
    }
    tensor.shape.assign(input.shape().begin(), input.shape().end());
    if (use_raw && !from_shm) {
      if (input.has_contents()) {
        return Status(StatusCode::kInvalidArg,
                      "contents field must not be specified when using "
                      "raw_input_contents for '" +
                          input.name() + "' for model '" + msg.model_name() + "'");
      }
    }
    if (from_shm) {
      // Zero copy: the tensor holds the mapping until the request is freed.
      tensor.data = span.data;
      tensor.byte_size = span.byte_size;
      tensor.owner = std::move(span.owner);
    } else if (use_raw && raw_index < raw_count) {
      const std::string& raw = msg.raw_input_contents(raw_index++);
      tensor.data = raw.data();
      tensor.byte_size = raw.size();
      tensor.owner = owner;
    } else if (!use_raw && input.has_contents()) {
      auto buffer =
          std::make_shared<std::string>(ContentsToRaw(tensor.dtype, input.contents()));
      tensor.data = buffer->data();
      tensor.byte_size = buffer->size();
      tensor.owner = std::move(buffer);
    } else {
      // Neither form carries this input (FP16/BF16 have no typed form either).
      return Status(StatusCode::kInvalidArg, "unable to find data for input tensor '" +
                                                 input.name() + "' for model '" +
                                                 msg.model_name() + "' in request.");
    }
    out->inputs.push_back(std::move(tensor));
  }
  out->requested_outputs.reserve(static_cast<size_t>(msg.outputs_size()));
  for (const auto& output : msg.outputs()) {
    if (UsesSharedMemory(output.parameters())) {
      ShmOutput target;
      target.name = output.name();
      uint64_t byte_size = 0;
      Status status = ParseShmParameters(output.name(), output.parameters(), shm,
                                         &target.region, &target.offset, &byte_size);
      if (status.ok()) {
        status = shm->Resolve(target.region, target.offset, byte_size, &target.span,
                              ShmUse::kWrite);
      }
      if (!status.ok()) return status;
      if (shm_outputs != nullptr) shm_outputs->push_back(std::move(target));
    }
    auto classes = output.parameters().find("classification");
    if (classes != output.parameters().end()) {
      uint32_t count = 0;
      Status status = ClassCountOf(classes->second, &count);
      if (!status.ok()) return status;
      if (count > 0) out->class_counts.emplace_back(output.name(), count);
    }
    out->requested_outputs.push_back(output.name());
  }

  if (!msg.parameters().empty()) {
    Parameters params;
    params.reserve(msg.parameters().size());
    for (const auto& [key, param] : msg.parameters()) {
      ParameterValue value;
      Status status = ConvertParameter(key, param, &value);
      if (!status.ok()) return status;
      params.emplace_back(key, std::move(value));
    }
    Status status = ApplyRequestParameters(std::move(params), out);
    if (!status.ok()) return status;
  }
  return Status::Ok();
}

Status BuildInferResponse(const InferenceResponse& response,
                          const std::string& request_id,
                          inference::ModelInferResponse* msg,
                          const ShmOutputs* shm_outputs) {
  msg->set_model_name(response.model_name);
  msg->set_model_version(std::to_string(response.model_version));
  msg->set_id(response.id.empty() ? request_id : response.id);
  auto* outputs = msg->mutable_outputs();
  auto* raws = msg->mutable_raw_output_contents();
  outputs->Reserve(static_cast<int>(response.outputs.size()));
  raws->Reserve(static_cast<int>(response.outputs.size()));
  for (const Tensor& tensor : response.outputs) {
    auto* out = outputs->Add();
    out->set_name(tensor.name);
    out->set_datatype(std::string(DataTypeName(tensor.dtype)));
    out->mutable_shape()->Add(tensor.shape.begin(), tensor.shape.end());
    std::string* raw = raws->Add();
    const ShmOutput* target =
        shm_outputs != nullptr ? FindShmOutput(*shm_outputs, tensor.name) : nullptr;
    if (target != nullptr) {
      Status status = WriteShmOutput(*target, tensor);
      if (!status.ok()) return status;
    } else if (tensor.data != nullptr) {
      raw->assign(tensor.data, tensor.byte_size);
    }
  }
  if (!response.parameters.empty()) {
    auto* params = msg->mutable_parameters();
    for (const auto& [key, value] : response.parameters)
      SetParameter(value, &(*params)[key]);
  }
  return Status::Ok();
}

}  // namespace grpcfe
}  // namespace tritonx
