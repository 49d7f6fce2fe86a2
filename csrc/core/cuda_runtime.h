// Thin wrappers over the few CUDA runtime calls the core makes. Without CUDA support
// compiled in (or with no usable device at run time) they report "unavailable" and the
// core falls back to pageable memory and no streams.
//
// Thread safety: every function may be called from any thread (the CUDA runtime is
// thread safe; the probe runs once). Ownership: what an *Alloc/*Create returns
// belongs to the caller until passed to the matching *Free/*Destroy.
#pragma once

#include <cstddef>
#include <string>

namespace tritonx {

// True when built with CUDA and at least one device answers. Checked once; the first
// negative answer is logged once.
bool CudaUsable();

// Devices the runtime sees (0 when CUDA is not usable).
int CudaDeviceCount();

// cudaHostAlloc / cudaFreeHost; null / no-op when CUDA is not usable.
void* CudaHostAlloc(size_t bytes);
void CudaHostFree(void* ptr);

// True when `ptr` is page-locked host memory the driver knows about.
bool CudaIsPinned(const void* ptr);

// cudaStreamCreateWithFlags(non-blocking) / cudaStreamDestroy; null when unusable.
// `device` < 0: the calling thread's current device.
void* CudaStreamCreate(int device = -1);
void CudaStreamDestroy(void* stream);

// Makes `device` the calling thread's current device (a backend whose framework
// works on the current device, as TensorRT does). Empty string on success, else the
// CUDA error text.
std::string CudaSetDevice(int device);

// Device memory (cudaMalloc on `device`): the tensorrt backend's I/O buffers, tests
// and benchmarks; null when unusable.
void* CudaDeviceAlloc(int device, size_t bytes);
void CudaDeviceFree(void* ptr);

// Async copies on `stream` and the one synchronisation a batch needs. They return
// an empty string on success, else the CUDA error text.
std::string CudaCopyHostToDevice(void* dst, const void* src, size_t bytes,
                                 void* stream);
std::string CudaCopyDeviceToHost(void* dst, const void* src, size_t bytes,
                                 void* stream);
std::string CudaStreamSync(void* stream);

// A blocking copy in either direction between host memory and device memory the
// runtime knows (unified addressing picks the direction); empty string on success.
// `device` >= 0: issued on that device's legacy default stream (the device whose
// memory is read, so the copy is ordered after work a DLPack producer made that
// stream wait for); -1: the calling thread's current device.
std::string CudaCopyBlocking(void* dst, const void* src, size_t bytes, int device = -1);

// Makes `stream` (a raw cudaStream_t, as a DLPack consumer names it) wait for the
// work queued so far on `device`'s legacy default stream, where the core's copies
// run. Empty string on success, else the CUDA error text.
std::string CudaStreamWaitLegacy(void* stream, int device);

// Waits (blocking the caller) for the work queued so far on `device`'s legacy
// default stream. Empty string on success, else the CUDA error text.
std::string CudaLegacyStreamSync(int device);

// CUDA IPC (the cuda_shared_memory extension): opens a peer's cudaIpcMemHandle_t
// (`handle` points at its 64 bytes) on `device`; *ptr is the mapped allocation's
// start and *allocation_bytes its size. Empty string on success, else the CUDA
// error text. The mapping stays until CudaIpcClose.
constexpr size_t kCudaIpcHandleBytes = 64;
std::string CudaIpcOpen(const void* handle, int device, void** ptr,
                        size_t* allocation_bytes);
void CudaIpcClose(void* ptr);

}  // namespace tritonx
