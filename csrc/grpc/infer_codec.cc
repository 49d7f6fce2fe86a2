#include "infer_codec.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/request_builder.h"
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
    AppendBytesElement(&out, element.data(), element.size());
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

// Triton's check of typed contents, field by field in the message's order: a field
// holding values after one was taken is "already supplied"; else it must be the
// field of the tensor's datatype (int_contents serves INT8/16/32, uint_contents
// UINT8/16/32), or it is named as of another type.
Status CheckContentsFields(const inference::ModelInferRequest::InferInputTensor& input,
                           const std::string& model) {
  const InferTensorContents& c = input.contents();
  const DataType dtype = DataTypeFromName(input.datatype());
  struct Field {
    int size;
    const char* type;
    bool serves;
  };
  const Field fields[] = {
      {c.bool_contents_size(), "BOOL", dtype == DataType::kBool},
      {c.int_contents_size(), "INT32",
       dtype == DataType::kInt8 || dtype == DataType::kInt16 ||
           dtype == DataType::kInt32},
      {c.int64_contents_size(), "INT64", dtype == DataType::kInt64},
      {c.uint_contents_size(), "UINT32",
       dtype == DataType::kUint8 || dtype == DataType::kUint16 ||
           dtype == DataType::kUint32},
      {c.uint64_contents_size(), "UINT64", dtype == DataType::kUint64},
      {c.fp32_contents_size(), "FP32", dtype == DataType::kFp32},
      {c.fp64_contents_size(), "FP64", dtype == DataType::kFp64},
      {c.bytes_contents_size(), "BYTES", dtype == DataType::kBytes},
  };
  bool supplied = false;
  for (const Field& field : fields) {
    if (field.size == 0) continue;
    if (supplied) {
      return Status(StatusCode::kInvalidArg,
                    "unexpected explicit tensor data for input tensor '" +
                        input.name() + "' for model '" + model +
                        "', binary data was already supplied.");
    }
    supplied = true;
    if (!field.serves) {
      return Status(StatusCode::kInvalidArg,
                    "unexpected explicit tensor data for input tensor '" +
                        input.name() + "' for model '" + model + "' of type '" +
                        field.type + "', expected datatype '" +
                        // Triton names the type it parsed: an unknown one is
                        // "<invalid>".
                        (DataTypeFromName(input.datatype()) == DataType::kInvalid
                             ? std::string("<invalid>")
                             : input.datatype()) +
                        "'");
    }
  }
  return Status::Ok();
}

// Classification extension: the class count an output asks for (Triton sends it as
// int64_param and refuses 0, which over HTTP asks for the values as produced).
Status ClassCountOf(const InferParameter& param, uint32_t* count) {
  int64_t value = 0;
  if (param.parameter_choice_case() == InferParameter::kInt64Param) {
    value = param.int64_param();
  } else {
    return Status(StatusCode::kInvalidArg,
                  "invalid value type for 'classification' parameter, expected "
                  "int64_param");
  }
  if (value <= 0) {  // Triton's words for it, though 0 is refused too
    return Status(StatusCode::kInvalidArg,
                  "invalid value for 'classification' parameter, expected >= 0");
  }
  *count = static_cast<uint32_t>(std::min<int64_t>(value, UINT32_MAX));
  return Status::Ok();
}

// The value types Triton's gRPC frontend takes for a request parameter; the value
// rules themselves are ApplyRequestParameters'.
Status CheckParameterType(const std::string& key, const InferParameter& param) {
  const auto type = param.parameter_choice_case();
  auto wrong = [&key](const char* expected) {
    return Status(
        StatusCode::kInvalidArg,
        "invalid value type for '" + key + "' parameter, expected " + expected + ".");
  };
  if (key == "priority") {
    if (type != InferParameter::kInt64Param && type != InferParameter::kUint64Param) {
      return wrong("int64_param or uint64_param");
    }
  } else if (key == "timeout") {
    if (type != InferParameter::kInt64Param) return wrong("int64_param");
  } else if (key == "sequence_id") {
    if (type != InferParameter::kInt64Param && type != InferParameter::kStringParam) {
      return wrong("int64_param or string_param");
    }
  } else if (key == "sequence_start" || key == "sequence_end" ||
             key == "triton_enable_empty_final_response") {
    if (type != InferParameter::kBoolParam) return wrong("bool_param");
  } else if (type == InferParameter::kUint64Param && key.rfind("triton_", 0) != 0) {
    return wrong("int64_param, bool_param, or string_param");
  }
  return Status::Ok();
}

Status ConvertParameter(const std::string& key, const InferParameter& param,
                        ParameterValue* out) {
  if (key == "timeout" &&
      param.parameter_choice_case() == InferParameter::kInt64Param) {
    // Triton reads it as unsigned: a negative one is no timeout of the request's own.
    *out = static_cast<uint64_t>(std::max<int64_t>(param.int64_param(), 0));
    return Status::Ok();
  }
  if (key == "sequence_id" &&
      param.parameter_choice_case() == InferParameter::kInt64Param) {
    *out = static_cast<uint64_t>(param.int64_param());  // as Triton's cast
    return Status::Ok();
  }
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

// Triton's reading of a tensor's shared memory parameters, in its order: the
// region (a string), the offset (int64, default 0), then the byte size (int64,
// required with a region); an offset or size without a region is refused.
// `*has_region` tells whether the tensor names a region.
Status ParseShmParameters(
    const std::string& tensor,
    const google::protobuf::Map<std::string, InferParameter>& params, ShmReference* ref,
    bool* has_region) {
  auto wrong_type = [&tensor](const std::string& key, const char* expected) {
    return Status(StatusCode::kInvalidArg, "invalid value type for '" + key +
                                               "' parameter for tensor '" + tensor +
                                               "', expected " + expected + ".");
  };
  auto without_region = [&tensor](const std::string& key) {
    return Status(StatusCode::kInvalidArg,
                  "'" + key +
                      "' can not be specified without 'shared_memory_region' "
                      "parameter for tensor '" +
                      tensor + "'");
  };
  auto name = params.find("shared_memory_region");
  *has_region = name != params.end();
  if (*has_region) {
    if (name->second.parameter_choice_case() != InferParameter::kStringParam) {
      return wrong_type("shared_memory_region", "string_param");
    }
    ref->region = name->second.string_param();
  }
  auto at = params.find("shared_memory_offset");
  if (at != params.end()) {
    if (!*has_region) return without_region("shared_memory_offset");
    if (at->second.parameter_choice_case() != InferParameter::kInt64Param) {
      return wrong_type("shared_memory_offset", "int64_param");
    }
    ref->offset = static_cast<uint64_t>(at->second.int64_param());
  }
  auto size = params.find("shared_memory_byte_size");
  if (size != params.end()) {
    if (!*has_region) return without_region("shared_memory_byte_size");
    if (size->second.parameter_choice_case() != InferParameter::kInt64Param) {
      return wrong_type("shared_memory_byte_size", "int64_param");
    }
    ref->byte_size = static_cast<uint64_t>(size->second.int64_param());
  } else if (*has_region) {
    return Status(StatusCode::kInvalidArg,
                  "'shared_memory_byte_size' must be specified along with "
                  "'shared_memory_region' parameter for tensor '" +
                      tensor + "'");
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
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(
      static_cast<grpc::StatusCode>(StatusCodeInfoOf(status.code()).grpc_code),
      status.message());
}

Status BuildInferenceRequest(const ModelInferRequest& msg,
                             const std::shared_ptr<const void>& owner,
                             const ModelSpec* spec, InferenceRequest* out,
                             const SharedMemoryRegistry* shm, ShmOutputs* shm_outputs) {
  std::vector<std::string_view> raw_inputs(msg.raw_input_contents().begin(),
                                           msg.raw_input_contents().end());
  return BuildInferenceRequest(msg, raw_inputs, owner, spec, out, shm, shm_outputs);
}

Status BuildInferenceRequest(const ModelInferRequest& msg,
                             const std::vector<std::string_view>& raw_inputs,
                             const std::shared_ptr<const void>& owner,
                             const ModelSpec* spec, InferenceRequest* out,
                             const SharedMemoryRegistry* shm, ShmOutputs* shm_outputs) {
  const int raw_count = static_cast<int>(raw_inputs.size());
  const bool use_raw = raw_count > 0;
  out->id = msg.id();
  // Triton's order: the id, each request parameter (its key, type and value), then
  // every input is added (a name given twice is refused here), then the requested
  // outputs, and only then each input's data. Parameters go in key order: Triton
  // walks its protobuf map, whose order no client can rely on.
  std::vector<const google::protobuf::MapPair<std::string, InferParameter>*> sorted;
  sorted.reserve(msg.parameters().size());
  for (const auto& entry : msg.parameters()) sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  Parameters params;
  params.reserve(sorted.size());
  for (const auto* entry : sorted) {
    const std::string& key = entry->first;
    ParameterValue value;
    Status status = ReservedParameter(key, WireProtocol::kGrpc);
    if (status.ok()) status = CheckParameterType(key, entry->second);
    if (status.ok()) status = ConvertParameter(key, entry->second, &value);
    if (status.ok())
      status = CheckRequestParameters({{key, value}}, WireProtocol::kGrpc);
    if (!status.ok()) return status;
    // The frontend's own setting (grpc_stream.cc reads it): the model never sees it.
    if (key == "triton_enable_empty_final_response") continue;
    params.emplace_back(key, std::move(value));
  }
  for (int i = 0; i < msg.inputs_size(); ++i) {
    for (int j = 0; j < i; ++j) {
      if (msg.inputs(j).name() == msg.inputs(i).name()) {
        return InputAlreadyExists(msg.id(), msg.inputs(i).name());
      }
    }
  }
  out->inputs.reserve(static_cast<size_t>(msg.inputs_size()));
  RequestBuilder builder(out, WireProtocol::kGrpc, msg.model_name(), shm);

  int raw_index = 0;
  for (const auto& input : msg.inputs()) {
    InputDescription desc;
    desc.name = input.name();
    desc.datatype = input.datatype();
    desc.shape.assign(input.shape().begin(), input.shape().end());
    bool from_shm = false;
    Status parsed =
        ParseShmParameters(input.name(), input.parameters(), &desc.shm, &from_shm);
    if (!parsed.ok()) return parsed;
    if (from_shm) {
      if (input.has_contents()) {
        return Status(StatusCode::kInvalidArg,
                      "unexpected 'content' provided when using shared memory for "
                      "input tensor '" +
                          input.name() + "' for model '" + msg.model_name() + "'");
      }
      desc.source = InputDescription::Source::kSharedMemory;
    } else if (use_raw) {
      if (input.has_contents()) {
        return Status(StatusCode::kInvalidArg,
                      "contents field must not be specified when using "
                      "raw_input_contents for '" +
                          input.name() + "' for model '" + msg.model_name() + "'");
      }
      if (raw_index < raw_count) {
        const std::string_view raw = raw_inputs[raw_index++];
        desc.data = raw.data();
        desc.byte_size = raw.size();
        desc.owner = owner;
      } else {
        desc.source = InputDescription::Source::kMissing;
      }
    } else if (input.has_contents()) {
      Status checked = CheckContentsFields(input, msg.model_name());
      if (!checked.ok()) return checked;
      // Typed contents: converted into a buffer the tensor owns (FP16/BF16 have no
      // typed field; they come out empty and fail the core's size check).
      const DataType dtype = DataTypeFromName(input.datatype());
      auto buffer =
          std::make_shared<std::string>(ContentsToRaw(dtype, input.contents()));
      desc.data = buffer->data();
      desc.byte_size = buffer->size();
      desc.owner = std::move(buffer);
    } else {
      desc.source = InputDescription::Source::kMissing;
    }
    Status status = builder.AddInput(std::move(desc));
    if (!status.ok()) return status;
  }
  out->requested_outputs.reserve(static_cast<size_t>(msg.outputs_size()));
  for (const auto& output : msg.outputs()) {
    OutputDescription desc;
    desc.name = output.name();
    Status parsed =
        ParseShmParameters(output.name(), output.parameters(), &desc.shm, &desc.to_shm);
    if (!parsed.ok()) return parsed;
    auto classes = output.parameters().find("classification");
    if (classes != output.parameters().end()) {
      Status status = ClassCountOf(classes->second, &desc.class_count);
      if (!status.ok()) return status;
      if (desc.to_shm) {
        return Status(StatusCode::kInvalidArg,
                      "output can't set both 'shared_memory_region' and "
                      "'classification'");
      }
    }
    Status status = builder.AddOutput(std::move(desc), shm_outputs);
    if (!status.ok()) return status;
  }

  return builder.SetParameters(std::move(params));
}

}  // namespace grpcfe
}  // namespace tritonx
