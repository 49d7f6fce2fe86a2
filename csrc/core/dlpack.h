// DLPack (https://dmlc.github.io/dlpack): the C ABI tensors cross frameworks with.
// The structs below are the ABI of DLPack 1.x (the unversioned DLManagedTensor of
// the legacy "dltensor" capsule and DLManagedTensorVersioned of
// "dltensor_versioned"), declared here so that the core needs no dlpack package.
// The conversions to and from core Tensors live here too, free of Python: the
// binding (bind_dlpack.cpp) adds the capsules and the producer's lifetime.
//
// Thread safety: stateless functions. Ownership: an exported DLManagedTensor owns a
// copy of the Tensor (and so its `owner`) until its deleter runs, which may happen
// on any thread.
#pragma once

#include <cstdint>
#include <string>

#include "status.h"
#include "tensor.h"

namespace tritonx {

extern "C" {
// Device types tritonx understands (DLDeviceType is a C enum: int-sized).
enum DLDeviceTypeCode : int32_t {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,  // page-locked host memory
  kDLCUDAManaged = 13,
};
struct DLDevice {
  int32_t device_type;
  int32_t device_id;
};
// Type codes (DLDataTypeCode).
enum : uint8_t {
  kDLInt = 0,
  kDLUInt = 1,
  kDLFloat = 2,
  kDLBfloat = 4,
  kDLBool = 6,
};
struct DLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null: compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};
struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
};
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
};
}  // extern "C"

constexpr uint64_t kDLPackFlagReadOnly = 1u;
constexpr uint32_t kDLPackMajorVersion = 1;

// Fills `out` (name, dtype, shape, data, byte_size, memory type and device,
// `read_only` false; not `owner`) from a DLTensor, without copying. INVALID_ARG,
// naming the tensor, for what a core tensor cannot be: lanes != 1 or a type with no
// wire datatype, strides that are not compact row-major (`*strided` set, so a
// caller may copy), negative dims, devices other than CPU / CUDA / CUDA host / CUDA
// managed; a GPU tensor where CUDA is not usable (not built, or no device) is
// refused too.
Status DescribeDLTensor(const DLTensor& dl, const std::string& name, Tensor* out,
                        bool* strided = nullptr);

// A host DLTensor with any strides copied into a compact row-major buffer: the
// one copy `DescribeDLTensor` refuses to make. Sets `out` fully (owner included).
Status CompactHostDLTensor(const DLTensor& dl, const std::string& name, Tensor* out);

// The DLPack device of a tensor: (kDLCUDA, device) for GPU memory, (kDLCPU, 0) for
// host memory, pinned included (every consumer reads kDLCPU; not all take
// kDLCUDAHost).
DLDevice DLDeviceOf(const Tensor& tensor);

// A DLManagedTensor (or the versioned kind) viewing `tensor`, compact row-major,
// holding a copy of it until the deleter runs. INVALID_ARG for BYTES (DLPack has
// no string type). The versioned kind is flagged read-only for a `read_only`
// tensor; the legacy kind cannot say so (its consumer is trusted not to write).
Status ExportDLPack(const Tensor& tensor, DLManagedTensor** out);
Status ExportDLPackVersioned(const Tensor& tensor, DLManagedTensorVersioned** out);

}  // namespace tritonx
