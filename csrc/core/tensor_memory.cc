#include "tensor_memory.h"

#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "cuda_runtime.h"

namespace tritonx {
namespace {
std::atomic<uint64_t> device_to_host_copies{0};
}  // namespace

uint64_t DeviceToHostCopies() {
  return device_to_host_copies.load(std::memory_order_relaxed);
}

Status CopyTensorBytes(const Tensor& tensor, char* dst, int dst_device) {
  if (tensor.byte_size == 0) return Status::Ok();
  if (tensor.on_host() && dst_device < 0) {
    // memmove: the two may overlap, e.g. an output written into a client's shared
    // memory region at an offset overlapping the input it was computed from (the
    // fuzz target fuzz_http_infer found this; memcpy's result is then undefined).
    std::memmove(dst, tensor.data, tensor.byte_size);
    return Status::Ok();
  }
  // cudaMemcpyDefault: unified addressing tells the direction from the pointers.
  // Issued on the source device (its legacy stream is the one a DLPack producer
  // was asked to order its work before), else on the destination's.
  const std::string error =
      CudaCopyBlocking(dst, tensor.data, tensor.byte_size,
                       tensor.on_host() ? dst_device : tensor.device_id);
  if (error.empty()) {
    if (!tensor.on_host() && dst_device < 0) {
      device_to_host_copies.fetch_add(1, std::memory_order_relaxed);
    }
    return Status::Ok();
  }
  const std::string from = tensor.on_host() ? std::string("host memory")
                                            : "GPU " + std::to_string(tensor.device_id);
  const std::string to =
      dst_device < 0 ? std::string("host memory") : "GPU " + std::to_string(dst_device);
  return Status(StatusCode::kInternal, "failed to copy tensor '" + tensor.name +
                                           "' from " + from + " to " + to + ": " +
                                           error);
}

Status HostTensor(const Tensor& tensor, Tensor* host, TensorArena* arena) {
  if (tensor.on_host()) {
    if (host != &tensor) *host = tensor;
    return Status::Ok();
  }
  return PrivateHostCopy(tensor, host, arena);
}

Status PrivateHostCopy(const Tensor& tensor, Tensor* host, TensorArena* arena) {
  Tensor out;
  out.name = tensor.name;
  out.dtype = tensor.dtype;
  out.shape = tensor.shape;
  out.byte_size = tensor.byte_size;
  out.device_id = tensor.device_id;
  out.memory_type = MemoryType::kCpu;
  char* data = nullptr;
  if (arena != nullptr && tensor.byte_size > 0) {
    ArenaBuffer buffer = arena->Allocate(tensor.byte_size);
    if (buffer) {
      data = buffer->data();
      if (arena->pinned()) out.memory_type = MemoryType::kCpuPinned;
      out.owner = std::move(buffer);
    }
  }
  if (data == nullptr && tensor.byte_size > 0) {
    std::shared_ptr<char> heap(new (std::nothrow) char[tensor.byte_size],
                               std::default_delete<char[]>());
    if (!heap) {
      return Status(StatusCode::kInternal,
                    "out of host memory copying tensor '" + tensor.name + "'");
    }
    data = heap.get();
    out.owner = std::move(heap);
  }
  Status status = CopyTensorBytes(tensor, data);
  if (!status.ok()) return status;
  out.data = data;
  *host = std::move(out);
  return Status::Ok();
}

}  // namespace tritonx
