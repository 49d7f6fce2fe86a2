// Thin wrappers over the few CUDA runtime calls the core makes. Without CUDA support
// compiled in (or with no usable device at run time) they report "unavailable" and the
// core falls back to pageable memory and no streams.
#pragma once

#include <cstddef>

namespace tritonx {

// True when built with CUDA and at least one device answers. Checked once; the first
// negative answer is logged once.
bool CudaUsable();

// cudaHostAlloc / cudaFreeHost; null / no-op when CUDA is not usable.
void* CudaHostAlloc(size_t bytes);
void CudaHostFree(void* ptr);

// cudaStreamCreateWithFlags(non-blocking) / cudaStreamDestroy; null when unusable.
void* CudaStreamCreate();
void CudaStreamDestroy(void* stream);

}  // namespace tritonx
