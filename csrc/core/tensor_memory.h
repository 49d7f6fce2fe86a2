// The one place the core turns a tensor's bytes into host bytes, whatever memory
// they live in (tensor.h, MemoryType). Every consumer that reads `Tensor::data` on
// the CPU (response writers, the response cache, classification, traces, sequence
// state, shared memory outputs, request inputs) either knows its tensor is in host
// memory by contract or goes through these two functions; nothing else copies
// device->host, and nothing reads a device pointer as host memory.
//
// Thread safety: stateless; callable from any thread (CUDA copies are blocking and
// ordered on the legacy default stream, after which the bytes are ready).
// Ownership: HostTensor's copy is owned by the returned tensor (its `owner`).
#pragma once

#include "status.h"
#include "tensor.h"
#include "tensor_arena.h"

namespace tritonx {

// `tensor` as a host tensor: the tensor itself (no copy) when its bytes are in
// host memory; for a GPU tensor one blocking device->host copy into a new buffer
// (from `arena` when given, page-locked there when it is, else the heap). INTERNAL
// when the copy fails, or when this build has no CUDA support.
Status HostTensor(const Tensor& tensor, Tensor* host, TensorArena* arena = nullptr);

// A copy of the tensor's bytes in host memory that nobody else reads (writable:
// read_only and aliased clear), wherever the bytes live. From `arena` when given:
// its buffers are reused, so a large copy per request costs a memcpy, not fresh
// pages faulted in and returned to the system each time.
Status PrivateHostCopy(const Tensor& tensor, Tensor* host,
                       TensorArena* arena = nullptr);

// Copies the tensor's `byte_size` bytes to `dst`: host memory when `dst_device`
// < 0, else device memory on that CUDA device. Host to host is a memmove (the
// ranges may overlap: an output into the shared memory its input came from); anything
// involving the device is one blocking CUDA copy (D2H, H2D or D2D). INTERNAL as
// above.
Status CopyTensorBytes(const Tensor& tensor, char* dst, int dst_device = -1);

// Device->host copies made so far in this process (a relaxed counter): lets tests
// check that a path that needs no host bytes makes none.
uint64_t DeviceToHostCopies();

}  // namespace tritonx
