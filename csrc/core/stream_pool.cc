#include "stream_pool.h"

#include "cuda_runtime.h"

namespace tritonx {

StreamPool::StreamPool(size_t count, int device) : device_(device) {
  streams_.reserve(count);
  for (size_t i = 0; i < count; ++i) streams_.push_back(CudaStreamCreate(device));
}

StreamPool::~StreamPool() {
  for (void* stream : streams_) CudaStreamDestroy(stream);
}

void* StreamPool::Get(size_t index) const {
  return index < streams_.size() ? streams_[index] : nullptr;
}

}  // namespace tritonx
