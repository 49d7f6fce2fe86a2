#include "cuda_runtime.h"

#include <atomic>
#include <cstring>
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

int CudaDeviceCount() {
#ifdef TRITONX_ENABLE_CUDA
  if (!CudaUsable()) return 0;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

bool CudaIsPinned(const void* ptr) {
#ifdef TRITONX_ENABLE_CUDA
  if (ptr == nullptr || !CudaUsable()) return false;
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attributes.type == cudaMemoryTypeHost;
#else
  (void)ptr;
  return false;
#endif
}

#ifdef TRITONX_ENABLE_CUDA
namespace {
// Runs `fn` with `device` current on this thread, then puts the previous one back
// (the caller's thread may be a Python thread whose device torch tracks).
template <typename Fn>
auto OnDevice(int device, Fn fn) {
  int previous = -1;
  if (device >= 0 && cudaGetDevice(&previous) == cudaSuccess && previous != device) {
    cudaSetDevice(device);
  } else {
    previous = -1;
  }
  auto result = fn();
  if (previous >= 0) cudaSetDevice(previous);
  return result;
}

std::string ErrorText(cudaError_t err) {
  if (err == cudaSuccess) return std::string();
  cudaGetLastError();
  return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}
}  // namespace
#endif

void* CudaStreamCreate(int device) {
#ifdef TRITONX_ENABLE_CUDA
  if (!CudaUsable()) return nullptr;
  return OnDevice(device, [] {
    cudaStream_t stream = nullptr;
    if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
      cudaGetLastError();
      return static_cast<void*>(nullptr);
    }
    return static_cast<void*>(stream);
  });
#else
  (void)device;
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

std::string CudaSetDevice(int device) {
#ifdef TRITONX_ENABLE_CUDA
  if (!CudaUsable()) return "no usable CUDA device";
  return ErrorText(cudaSetDevice(device));
#else
  (void)device;
  return "CUDA support is not built in";
#endif
}

void* CudaDeviceAlloc(int device, size_t bytes) {
#ifdef TRITONX_ENABLE_CUDA
  if (!CudaUsable()) return nullptr;
  return OnDevice(device, [bytes] {
    void* ptr = nullptr;
    if (cudaMalloc(&ptr, bytes) != cudaSuccess) {
      cudaGetLastError();
      return static_cast<void*>(nullptr);
    }
    return ptr;
  });
#else
  (void)device;
  (void)bytes;
  return nullptr;
#endif
}

void CudaDeviceFree(void* ptr) {
#ifdef TRITONX_ENABLE_CUDA
  if (ptr != nullptr) cudaFree(ptr);
#else
  (void)ptr;
#endif
}

std::string CudaCopyHostToDevice(void* dst, const void* src, size_t bytes,
                                 void* stream) {
#ifdef TRITONX_ENABLE_CUDA
  return ErrorText(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice,
                                   static_cast<cudaStream_t>(stream)));
#else
  return "CUDA support is not built in";
#endif
}

std::string CudaCopyDeviceToHost(void* dst, const void* src, size_t bytes,
                                 void* stream) {
#ifdef TRITONX_ENABLE_CUDA
  return ErrorText(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost,
                                   static_cast<cudaStream_t>(stream)));
#else
  return "CUDA support is not built in";
#endif
}

std::string CudaStreamSync(void* stream) {
#ifdef TRITONX_ENABLE_CUDA
  return ErrorText(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
#else
  (void)stream;
  return "CUDA support is not built in";
#endif
}

std::string CudaCopyBlocking(void* dst, const void* src, size_t bytes, int device) {
#ifdef TRITONX_ENABLE_CUDA
  return OnDevice(device, [&] {
    return ErrorText(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
  });
#else
  (void)dst;
  (void)src;
  (void)bytes;
  (void)device;
  return "CUDA support is not built in";
#endif
}

std::string CudaLegacyStreamSync(int device) {
#ifdef TRITONX_ENABLE_CUDA
  return OnDevice(device,
                  [] { return ErrorText(cudaStreamSynchronize(cudaStreamLegacy)); });
#else
  (void)device;
  return "CUDA support is not built in";
#endif
}

std::string CudaStreamWaitLegacy(void* stream, int device) {
#ifdef TRITONX_ENABLE_CUDA
  return OnDevice(device, [stream] {
    cudaEvent_t event = nullptr;
    cudaError_t err = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
    if (err != cudaSuccess) return ErrorText(err);
    err = cudaEventRecord(event, cudaStreamLegacy);
    if (err == cudaSuccess) {
      err = cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), event, 0);
    }
    cudaEventDestroy(event);  // released once the wait completes
    return ErrorText(err);
  });
#else
  (void)stream;
  (void)device;
  return "CUDA support is not built in";
#endif
}

std::string CudaIpcOpen(const void* handle, int device, void** ptr,
                        size_t* allocation_bytes) {
#ifdef TRITONX_ENABLE_CUDA
  if (!CudaUsable()) return "no usable GPU";
  static_assert(sizeof(cudaIpcMemHandle_t) == kCudaIpcHandleBytes,
                "cudaIpcMemHandle_t is 64 bytes");
  cudaIpcMemHandle_t ipc{};
  std::memcpy(&ipc, handle, sizeof(ipc));
  return OnDevice(device, [&]() -> std::string {
    void* opened = nullptr;
    cudaError_t err =
        cudaIpcOpenMemHandle(&opened, ipc, cudaIpcMemLazyEnablePeerAccess);
    if (err != cudaSuccess) return ErrorText(err);
    // The allocation's size comes from the driver (cuMemGetAddressRange), reached
    // through the runtime so that the core does not link libcuda itself.
    using GetRange = int (*)(unsigned long long*, size_t*, unsigned long long);
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult found{};
    err = cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &entry, 12000,
                                           cudaEnableDefault, &found);
    size_t size = 0;
    if (err != cudaSuccess || entry == nullptr ||
        reinterpret_cast<GetRange>(entry)(
            nullptr, &size, reinterpret_cast<unsigned long long>(opened)) != 0) {
      cudaIpcCloseMemHandle(opened);
      return err != cudaSuccess ? ErrorText(err)
                                : std::string("cuMemGetAddressRange failed");
    }
    *ptr = opened;
    *allocation_bytes = size;
    return std::string();
  });
#else
  (void)handle;
  (void)device;
  (void)ptr;
  (void)allocation_bytes;
  return "CUDA support is not built in";
#endif
}

void CudaIpcClose(void* ptr) {
#ifdef TRITONX_ENABLE_CUDA
  if (ptr != nullptr && cudaIpcCloseMemHandle(ptr) != cudaSuccess) cudaGetLastError();
#else
  (void)ptr;
#endif
}

}  // namespace tritonx
