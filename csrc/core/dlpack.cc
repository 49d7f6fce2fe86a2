#include "dlpack.h"

#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "cuda_runtime.h"

namespace tritonx {
namespace {

DataType DataTypeOfDL(const DLDataType& dt) {
  if (dt.lanes != 1) return DataType::kInvalid;
  switch (dt.code) {
    case kDLBool:
      return dt.bits == 8 ? DataType::kBool : DataType::kInvalid;
    case kDLInt:
      return dt.bits == 8    ? DataType::kInt8
             : dt.bits == 16 ? DataType::kInt16
             : dt.bits == 32 ? DataType::kInt32
             : dt.bits == 64 ? DataType::kInt64
                             : DataType::kInvalid;
    case kDLUInt:
      return dt.bits == 8    ? DataType::kUint8
             : dt.bits == 16 ? DataType::kUint16
             : dt.bits == 32 ? DataType::kUint32
             : dt.bits == 64 ? DataType::kUint64
                             : DataType::kInvalid;
    case kDLFloat:
      return dt.bits == 16   ? DataType::kFp16
             : dt.bits == 32 ? DataType::kFp32
             : dt.bits == 64 ? DataType::kFp64
                             : DataType::kInvalid;
    case kDLBfloat:
      return dt.bits == 16 ? DataType::kBf16 : DataType::kInvalid;
    default:
      return DataType::kInvalid;
  }
}

bool DLDataTypeOf(DataType dtype, DLDataType* out) {
  const auto bits = static_cast<uint8_t>(DataTypeByteSize(dtype) * 8);
  out->bits = bits;
  out->lanes = 1;
  switch (dtype) {
    case DataType::kBool:
      out->code = kDLBool;
      return true;
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32:
    case DataType::kInt64:
      out->code = kDLInt;
      return true;
    case DataType::kUint8:
    case DataType::kUint16:
    case DataType::kUint32:
    case DataType::kUint64:
      out->code = kDLUInt;
      return true;
    case DataType::kFp16:
    case DataType::kFp32:
    case DataType::kFp64:
      out->code = kDLFloat;
      return true;
    case DataType::kBf16:
      out->code = kDLBfloat;
      return true;
    default:
      return false;
  }
}

// Whether `dl`'s strides (in elements) describe compact row-major storage.
bool IsCompact(const DLTensor& dl) {
  if (dl.strides == nullptr) return true;
  int64_t expected = 1;
  for (int32_t i = dl.ndim - 1; i >= 0; --i) {
    if (dl.shape[i] == 0) return true;  // no elements: any strides will do
    if (dl.shape[i] != 1 && dl.strides[i] != expected) return false;
    expected *= dl.shape[i];
  }
  return true;
}

std::string Quoted(const std::string& name) { return "tensor '" + name + "'"; }

// What an exported DLManagedTensor[Versioned] points into: the tensor it views
// (keeping its bytes) and the shape array DLPack reads.
template <typename Managed>
struct ExportContext {
  Tensor tensor;
  std::vector<int64_t> shape;
  Managed managed{};
};

template <typename Managed>
Status Export(const Tensor& tensor, Managed** out) {
  DLDataType dtype{};
  if (!DLDataTypeOf(tensor.dtype, &dtype)) {
    return Status(StatusCode::kInvalidArg, Quoted(tensor.name) + " has datatype " +
                                               std::string(DataTypeName(tensor.dtype)) +
                                               ", which DLPack cannot represent");
  }
  auto* ctx = new ExportContext<Managed>();
  ctx->tensor = tensor;
  ctx->shape.assign(tensor.shape.begin(), tensor.shape.end());
  DLTensor& dl = ctx->managed.dl_tensor;
  dl.data = const_cast<char*>(tensor.data);
  dl.device = DLDeviceOf(tensor);
  dl.ndim = static_cast<int32_t>(ctx->shape.size());
  dl.dtype = dtype;
  dl.shape = ctx->shape.data();
  dl.strides = nullptr;
  dl.byte_offset = 0;
  ctx->managed.manager_ctx = ctx;
  ctx->managed.deleter = [](Managed* self) {
    delete static_cast<ExportContext<Managed>*>(self->manager_ctx);
  };
  *out = &ctx->managed;
  return Status::Ok();
}

}  // namespace

Status DescribeDLTensor(const DLTensor& dl, const std::string& name, Tensor* out,
                        bool* strided) {
  if (strided != nullptr) *strided = false;
  const DataType dtype = DataTypeOfDL(dl.dtype);
  if (dtype == DataType::kInvalid) {
    return Status(StatusCode::kInvalidArg,
                  Quoted(name) + " has an unsupported DLPack data type (code " +
                      std::to_string(dl.dtype.code) + ", " +
                      std::to_string(dl.dtype.bits) + " bits, " +
                      std::to_string(dl.dtype.lanes) + " lanes)");
  }
  if (dl.ndim < 0 || (dl.ndim > 0 && dl.shape == nullptr)) {
    return Status(StatusCode::kInvalidArg, Quoted(name) + " has no valid DLPack shape");
  }
  Shape shape(dl.shape, dl.shape + dl.ndim);
  int64_t count = 0;
  if (CheckedElementCount(shape, &count) != ShapeCount::kOk) {
    return Status(StatusCode::kInvalidArg,
                  Quoted(name) + " has an invalid shape " + ShapeToString(shape));
  }
  MemoryType memory = MemoryType::kCpu;
  switch (dl.device.device_type) {
    case kDLCPU:
      break;
    case kDLCUDAHost:
      memory = MemoryType::kCpuPinned;
      break;
    case kDLCUDA:
    case kDLCUDAManaged:
      memory = MemoryType::kGpu;
      if (!CudaUsable()) {
        return Status(StatusCode::kInvalidArg,
                      Quoted(name) + " is in GPU memory (cuda:" +
                          std::to_string(dl.device.device_id) +
                          "), but this server has no usable CUDA device (or was built "
                          "without CUDA)");
      }
      break;
    default:
      return Status(StatusCode::kInvalidArg,
                    Quoted(name) + " is on DLPack device type " +
                        std::to_string(dl.device.device_type) +
                        "; only CPU and CUDA memory are supported");
  }
  if (!IsCompact(dl)) {
    if (strided != nullptr) *strided = true;
    return Status(StatusCode::kInvalidArg,
                  Quoted(name) +
                      " is not contiguous in C order; DLPack tensors must be "
                      "(make it contiguous first, e.g. torch's .contiguous())");
  }
  out->name = name;
  out->dtype = dtype;
  out->shape = std::move(shape);
  out->byte_size = static_cast<size_t>(count) * DataTypeByteSize(dtype);
  out->data = static_cast<const char*>(dl.data) + dl.byte_offset;
  out->memory_type = memory;
  out->device_id = memory == MemoryType::kCpu ? 0 : dl.device.device_id;
  out->read_only = false;  // a DLTensor cannot say; the versioned capsule's flags do
  return Status::Ok();
}

Status CompactHostDLTensor(const DLTensor& dl, const std::string& name, Tensor* out) {
  bool strided = false;
  Status status = DescribeDLTensor(dl, name, out, &strided);
  if (status.ok() || !strided) return status;
  if (dl.device.device_type != kDLCPU && dl.device.device_type != kDLCUDAHost) {
    return status;  // a strided GPU tensor: refused
  }
  const DataType dtype = DataTypeOfDL(dl.dtype);
  const size_t element = DataTypeByteSize(dtype);
  Shape shape(dl.shape, dl.shape + dl.ndim);
  const int64_t count = ElementCount(shape);
  std::shared_ptr<char> buffer(new (std::nothrow) char[count * element + 1],
                               std::default_delete<char[]>());
  if (!buffer)
    return Status(StatusCode::kInternal, "out of memory copying " + Quoted(name));
  const char* base = static_cast<const char*>(dl.data) + dl.byte_offset;
  // Walk the elements in row-major order with a running index (an odometer).
  std::vector<int64_t> index(static_cast<size_t>(dl.ndim), 0);
  int64_t offset = 0;  // in elements, of the current index under dl.strides
  for (int64_t i = 0; i < count; ++i) {
    std::memcpy(buffer.get() + i * element,
                base + offset * static_cast<int64_t>(element), element);
    for (int32_t d = dl.ndim - 1; d >= 0; --d) {
      if (++index[d] < dl.shape[d]) {
        offset += dl.strides[d];
        break;
      }
      offset -= dl.strides[d] * (dl.shape[d] - 1);
      index[d] = 0;
    }
  }
  out->name = name;
  out->dtype = dtype;
  out->shape = std::move(shape);
  out->byte_size = static_cast<size_t>(count) * element;
  out->data = buffer.get();
  out->owner = std::move(buffer);
  out->read_only = false;  // our own copy
  out->memory_type = MemoryType::kCpu;
  out->device_id = 0;
  return Status::Ok();
}

DLDevice DLDeviceOf(const Tensor& tensor) {
  if (tensor.on_host()) return DLDevice{kDLCPU, 0};
  return DLDevice{kDLCUDA, tensor.device_id};
}

Status ExportDLPack(const Tensor& tensor, DLManagedTensor** out) {
  return Export(tensor, out);
}

Status ExportDLPackVersioned(const Tensor& tensor, DLManagedTensorVersioned** out) {
  Status status = Export(tensor, out);
  if (status.ok()) {
    (*out)->version = DLPackVersion{kDLPackMajorVersion, 0};
    (*out)->flags = tensor.read_only ? kDLPackFlagReadOnly : 0;
  }
  return status;
}

}  // namespace tritonx
