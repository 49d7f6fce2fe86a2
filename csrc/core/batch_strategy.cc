#include "batch_strategy.h"

#include <dlfcn.h>

#include <cstring>
#include <string>
#include <utility>

#include "data_type.h"
#include "infer_request.h"
#include "logging.h"

// Triton's C API types as this server defines them. Only pointers cross the library
// boundary, so their layout is ours.
struct TRITONSERVER_Error {
  tritonx::StatusCode code;
  std::string message;
};
struct TRITONSERVER_Message {
  std::string json;
};

namespace tritonx {
namespace {

// Triton's TRITONSERVER_Error_Code numbers UNKNOWN (0) .. CANCELLED (7) in the order
// of StatusCode kUnknown (1) .. kCancelled (8).
StatusCode FromTritonCode(int code) {
  if (code < 0 || code > 7) return StatusCode::kUnknown;
  return static_cast<StatusCode>(code + 1);
}
int ToTritonCode(StatusCode code) {
  return code == StatusCode::kOk ? 0 : static_cast<int>(code) - 1;
}

TRITONSERVER_Error* NewError(StatusCode code, std::string message) {
  return new TRITONSERVER_Error{code, std::move(message)};
}

InferenceRequest* RequestOf(TRITONBACKEND_Request* request) {
  return reinterpret_cast<InferenceRequest*>(request);
}

// The address of something defined in this module, for dladdr.
void ModuleAnchor() {}

// Makes this module's exported symbols visible to libraries opened after it: Python
// opens extension modules RTLD_LOCAL, so a strategy's undefined TRITONBACKEND_*
// symbols would otherwise not resolve.
void ExportThisModule() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&ModuleAnchor), &info) == 0 ||
      info.dli_fname == nullptr) {
    return;
  }
  // Raises the module already loaded to global scope; the handle is kept open.
  dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
}

}  // namespace

Status BatchStrategy::Load(const std::string& path, BatchStrategyModel model,
                           std::shared_ptr<BatchStrategy>* out) {
  ExportThisModule();
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return Status(StatusCode::kNotFound,
                  "unable to load shared library: " + std::string(why ? why : path));
  }
  std::shared_ptr<BatchStrategy> strategy(new BatchStrategy());
  strategy->path_ = path;
  strategy->model_ = std::move(model);
  strategy->handle_ = handle;
  auto find = [handle](const char* name, auto* fn) {
    *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(dlsym(handle, name));
    return *fn != nullptr;
  };
  const int defined =
      find("TRITONBACKEND_ModelBatchIncludeRequest", &strategy->include_) +
      find("TRITONBACKEND_ModelBatchInitialize", &strategy->batch_init_) +
      find("TRITONBACKEND_ModelBatchFinalize", &strategy->batch_fini_) +
      find("TRITONBACKEND_ModelBatcherInitialize", &strategy->batcher_init_) +
      find("TRITONBACKEND_ModelBatcherFinalize", &strategy->batcher_fini_);
  if (defined != 0 && defined != 5) {
    strategy->include_ = nullptr;
    strategy->batcher_fini_ = nullptr;
    return Status(StatusCode::kInvalidArg,
                  path +
                      " does not define all required custom batching functions "
                      "for model " +
                      strategy->model_.name);
  }
  if (strategy->batcher_init_ != nullptr) {
    TRITONSERVER_Error* error = strategy->batcher_init_(
        &strategy->batcher_, reinterpret_cast<TRITONBACKEND_Model*>(&strategy->model_));
    if (error != nullptr) {
      Status status(error->code, error->message);
      delete error;
      strategy->batcher_fini_ = nullptr;  // never initialized
      return status;
    }
  }
  *out = std::move(strategy);
  return Status::Ok();
}

BatchStrategy::~BatchStrategy() {
  if (batcher_fini_ != nullptr) {
    TRITONSERVER_Error* error = batcher_fini_(batcher_);
    if (error != nullptr) {
      Log(LogLevel::kError, "Custom batcher finalization failed for model " +
                                model_.name + ": " + error->message);
      delete error;
    }
  }
  if (handle_ != nullptr) dlclose(handle_);
}

void BatchStrategy::LogError(const char* function, TRITONSERVER_Error* error) const {
  if (error == nullptr) return;
  Log(LogLevel::kError, std::string("Custom batching ") + function +
                            " function failed for model " + model_.name + ": " +
                            error->message);
  delete error;
}

void* BatchStrategy::BeginBatch() const {
  if (!enabled()) return nullptr;
  void* state = nullptr;
  LogError("initialization", batch_init_(batcher_, &state));
  return state;
}

bool BatchStrategy::Include(InferenceRequest* request, void* batch_state) const {
  if (!enabled()) return true;
  bool include = false;
  LogError("include", include_(reinterpret_cast<TRITONBACKEND_Request*>(request),
                               batch_state, &include));
  return include;
}

void BatchStrategy::EndBatch(void* batch_state) const {
  if (!enabled() || batch_state == nullptr) return;
  LogError("finalization", batch_fini_(batch_state));
}

}  // namespace tritonx

// --- The part of Triton's C API a strategy library can call ---------------------
// Signatures as in Triton's tritonserver.h / tritonbackend.h (enums passed as their
// int values). Kept in this file so that linking BatchStrategy links them too.

using tritonx::DataType;
using tritonx::NewError;
using tritonx::RequestOf;
using tritonx::StatusCode;

#define TRITONX_C_API extern "C" __attribute__((visibility("default")))

TRITONX_C_API TRITONSERVER_Error* TRITONSERVER_ErrorNew(int code, const char* msg) {
  return NewError(tritonx::FromTritonCode(code), msg == nullptr ? "" : msg);
}
TRITONX_C_API void TRITONSERVER_ErrorDelete(TRITONSERVER_Error* error) { delete error; }
TRITONX_C_API int TRITONSERVER_ErrorCode(TRITONSERVER_Error* error) {
  return tritonx::ToTritonCode(error->code);
}
TRITONX_C_API const char* TRITONSERVER_ErrorCodeString(TRITONSERVER_Error* error) {
  return tritonx::StatusCodeInfoOf(error->code).words;
}
TRITONX_C_API const char* TRITONSERVER_ErrorMessage(TRITONSERVER_Error* error) {
  return error->message.c_str();
}

TRITONX_C_API TRITONSERVER_Error* TRITONSERVER_MessageNewFromSerializedJson(
    TRITONSERVER_Message** message, const char* base, size_t byte_size) {
  *message = new TRITONSERVER_Message{std::string(base, byte_size)};
  return nullptr;
}
TRITONX_C_API TRITONSERVER_Error* TRITONSERVER_MessageDelete(
    TRITONSERVER_Message* message) {
  delete message;
  return nullptr;
}
TRITONX_C_API TRITONSERVER_Error* TRITONSERVER_MessageSerializeToJson(
    TRITONSERVER_Message* message, const char** base, size_t* byte_size) {
  *base = message->json.data();
  *byte_size = message->json.size();
  return nullptr;
}

TRITONX_C_API const char* TRITONSERVER_DataTypeString(int datatype) {
  // DataType numbers its types as Triton's TRITONSERVER_DataType does.
  static thread_local std::string name;
  name = std::string(tritonx::DataTypeName(static_cast<DataType>(datatype)));
  return name.c_str();
}
TRITONX_C_API int TRITONSERVER_StringToDataType(const char* dtype) {
  return static_cast<int>(tritonx::DataTypeFromName(dtype == nullptr ? "" : dtype));
}
TRITONX_C_API uint32_t TRITONSERVER_DataTypeByteSize(int datatype) {
  return static_cast<uint32_t>(
      tritonx::DataTypeByteSize(static_cast<DataType>(datatype)));
}
TRITONX_C_API const char* TRITONSERVER_MemoryTypeString(int memtype) {
  return tritonx::MemoryTypeName(static_cast<tritonx::MemoryType>(memtype));
}

// TRITONSERVER_LogLevel: INFO, WARN, ERROR, VERBOSE.
TRITONX_C_API bool TRITONSERVER_LogIsEnabled(int level) { return level != 3; }
TRITONX_C_API TRITONSERVER_Error* TRITONSERVER_LogMessage(int level,
                                                          const char* filename,
                                                          const int line,
                                                          const char* msg) {
  static constexpr tritonx::LogLevel kLevels[] = {
      tritonx::LogLevel::kInfo, tritonx::LogLevel::kWarning, tritonx::LogLevel::kError,
      tritonx::LogLevel::kVerbose};
  const auto ours =
      level >= 0 && level <= 3 ? kLevels[level] : tritonx::LogLevel::kInfo;
  (void)filename;
  (void)line;
  tritonx::Log(ours, msg == nullptr ? "" : msg);
  return nullptr;
}

TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_ApiVersion(uint32_t* major,
                                                           uint32_t* minor) {
  *major = 1;  // the TRITONBACKEND API of Triton 2.51
  *minor = 19;
  return nullptr;
}

TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_ModelName(TRITONBACKEND_Model* model,
                                                          const char** name) {
  *name = reinterpret_cast<tritonx::BatchStrategyModel*>(model)->name.c_str();
  return nullptr;
}
TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_ModelVersion(TRITONBACKEND_Model* model,
                                                             uint64_t* version) {
  *version = reinterpret_cast<tritonx::BatchStrategyModel*>(model)->version;
  return nullptr;
}
TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_ModelConfig(
    TRITONBACKEND_Model* model, const uint32_t config_version,
    TRITONSERVER_Message** model_config) {
  if (config_version != 1) {
    return NewError(StatusCode::kUnsupported,
                    "model configuration version " + std::to_string(config_version) +
                        " not supported, supported versions are: 1");
  }
  *model_config = new TRITONSERVER_Message{
      reinterpret_cast<tritonx::BatchStrategyModel*>(model)->config_json};
  return nullptr;
}

struct TRITONBACKEND_Input;  // a tritonx::Tensor of the request

TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_RequestId(
    TRITONBACKEND_Request* request, const char** id) {
  *id = RequestOf(request)->id.c_str();
  return nullptr;
}
TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_RequestCorrelationId(
    TRITONBACKEND_Request* request, uint64_t* id) {
  if (!RequestOf(request)->correlation_id_str.empty()) {
    return NewError(StatusCode::kInvalidArg,
                    "correlation ID in request is not an unsigned int");
  }
  *id = RequestOf(request)->correlation_id;
  return nullptr;
}
TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_RequestInputCount(
    TRITONBACKEND_Request* request, uint32_t* count) {
  *count = static_cast<uint32_t>(RequestOf(request)->inputs.size());
  return nullptr;
}

namespace {
TRITONSERVER_Error* InputIndexOutOfRange(uint32_t index, size_t count) {
  return NewError(StatusCode::kInvalidArg,
                  "out of bounds index " + std::to_string(index) + ": request has " +
                      std::to_string(count) + " inputs");
}
}  // namespace

TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_RequestInputName(
    TRITONBACKEND_Request* request, const uint32_t index, const char** input_name) {
  const auto& inputs = RequestOf(request)->inputs;
  if (index >= inputs.size()) return InputIndexOutOfRange(index, inputs.size());
  *input_name = inputs[index].name.c_str();
  return nullptr;
}
TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_RequestInputByIndex(
    TRITONBACKEND_Request* request, const uint32_t index, TRITONBACKEND_Input** input) {
  auto& inputs = RequestOf(request)->inputs;
  if (index >= inputs.size()) return InputIndexOutOfRange(index, inputs.size());
  *input = reinterpret_cast<TRITONBACKEND_Input*>(&inputs[index]);
  return nullptr;
}
TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_RequestInput(
    TRITONBACKEND_Request* request, const char* name, TRITONBACKEND_Input** input) {
  for (auto& tensor : RequestOf(request)->inputs) {
    if (tensor.name == name) {
      *input = reinterpret_cast<TRITONBACKEND_Input*>(&tensor);
      return nullptr;
    }
  }
  return NewError(StatusCode::kInvalidArg,
                  std::string("unknown request input name ") + name);
}
TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_RequestOutputCount(
    TRITONBACKEND_Request* request, uint32_t* count) {
  *count = static_cast<uint32_t>(RequestOf(request)->requested_outputs.size());
  return nullptr;
}
TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_RequestOutputName(
    TRITONBACKEND_Request* request, const uint32_t index, const char** output_name) {
  const auto& outputs = RequestOf(request)->requested_outputs;
  if (index >= outputs.size()) {
    return NewError(StatusCode::kInvalidArg,
                    "out of bounds index " + std::to_string(index) + ": request has " +
                        std::to_string(outputs.size()) + " requested outputs");
  }
  *output_name = outputs[index].c_str();
  return nullptr;
}

TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_InputProperties(
    TRITONBACKEND_Input* input, const char** name, int* datatype, const int64_t** shape,
    uint32_t* dims_count, uint64_t* byte_size, uint32_t* buffer_count) {
  const auto* tensor = reinterpret_cast<const tritonx::Tensor*>(input);
  if (name != nullptr) *name = tensor->name.c_str();
  if (datatype != nullptr) *datatype = static_cast<int>(tensor->dtype);
  if (shape != nullptr) *shape = tensor->shape.data();
  if (dims_count != nullptr) *dims_count = static_cast<uint32_t>(tensor->shape.size());
  if (byte_size != nullptr) *byte_size = tensor->byte_size;
  if (buffer_count != nullptr) *buffer_count = 1;
  return nullptr;
}
TRITONX_C_API TRITONSERVER_Error* TRITONBACKEND_InputBuffer(
    TRITONBACKEND_Input* input, const uint32_t index, const void** buffer,
    uint64_t* buffer_byte_size, int* memory_type, int64_t* memory_type_id) {
  const auto* tensor = reinterpret_cast<const tritonx::Tensor*>(input);
  if (index != 0) {
    return NewError(StatusCode::kInvalidArg, "out of bounds index " +
                                                 std::to_string(index) + ": input '" +
                                                 tensor->name + "' has 1 buffers");
  }
  *buffer = tensor->data;
  *buffer_byte_size = tensor->byte_size;
  *memory_type = static_cast<int>(tensor->memory_type);
  *memory_type_id = tensor->device_id;
  return nullptr;
}
