#include "cuda_runtime.h"

#include <mutex>
#include <string>

#include "logging.h"

#ifdef TRITONX_ENABLE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tritonx {

bool CudaUsable() {
  static const bool usable = [] {
#ifdef TRITONX_ENABLE_CUDA
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
      Log(LogLevel::kInfo, std::string("CUDA support is built in but no usable GPU (") +
                               cudaGetErrorString(err) +
                               "): using pageable host memory and no CUDA streams");
      cudaGetLastError();  // clear the sticky error
      return false;
    }
    Log(LogLevel::kInfo, "CUDA: " + std::to_string(count) +
                             " device(s); pinned host memory and per-instance streams");
    return true;
#else
    return false;
#endif
  }();
  return usable;
}

void* CudaHostAlloc(size_t bytes) {
#ifdef TRITONX_ENABLE_CUDA
  if (!CudaUsable()) return nullptr;
  void* ptr = nullptr;
  if (cudaHostAlloc(&ptr, bytes, cudaHostAllocPortable) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return ptr;
#else
  (void)bytes;
  return nullptr;
#endif
}

void CudaHostFree(void* ptr) {
#ifdef TRITONX_ENABLE_CUDA
  if (ptr != nullptr) cudaFreeHost(ptr);
#else
  (void)ptr;
#endif
}

void* CudaStreamCreate() {
#ifdef TRITONX_ENABLE_CUDA
  if (!CudaUsable()) return nullptr;
  cudaStream_t stream = nullptr;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return stream;
#else
  return nullptr;
#endif
}

void CudaStreamDestroy(void* stream) {
#ifdef TRITONX_ENABLE_CUDA
  if (stream != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream));
#else
  (void)stream;
#endif
}

}  // namespace tritonx
