#include "cuda_runtime.h"

#include <atomic>
#include <mutex>
#include <string>

#include "logging.h"

#ifdef TRITONX_ENABLE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tritonx {

namespace {

struct CudaProbe {
  bool usable = false;
  std::string message;
};

// Probed once. Nothing here logs: a static initializer must not call out to a log
// sink, which may need a lock (the GIL) that a thread waiting on this very
// initializer holds.
const CudaProbe& Probe() {
  static const CudaProbe probe = [] {
    CudaProbe result;
#ifdef TRITONX_ENABLE_CUDA
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
      result.message = std::string("CUDA support is built in but no usable GPU (") +
                       cudaGetErrorString(err) +
                       "): using pageable host memory and no CUDA streams";
      cudaGetLastError();  // clear the sticky error
    } else {
      result.usable = true;
      result.message = "CUDA: " + std::to_string(count) +
                       " device(s); pinned host memory and per-instance streams";
    }
#endif
    return result;
  }();
  return probe;
}

}  // namespace

bool CudaUsable() {
  const CudaProbe& probe = Probe();
  static std::atomic<bool> logged{false};
  if (!probe.message.empty() && !logged.exchange(true)) {
    Log(LogLevel::kInfo, probe.message);
  }
  return probe.usable;
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
