#include "stream_pool.h"

#include <map>
#include <mutex>

#include "cuda_runtime.h"

namespace tritonx {
namespace {

// Released streams per device, reused before new ones are created. Leaked on
// purpose: destroying streams at exit would race the CUDA runtime's own teardown.
struct FreeList {
  std::mutex mu;
  std::map<int, std::vector<void*>> streams;
};

FreeList& Free() {
  static FreeList* list = new FreeList();
  return *list;
}

}  // namespace

StreamPool::StreamPool(size_t count, int device) : device_(device) {
  streams_.reserve(count);
  {
    FreeList& free = Free();
    std::lock_guard<std::mutex> lock(free.mu);
    std::vector<void*>& spare = free.streams[device];
    while (streams_.size() < count && !spare.empty()) {
      streams_.push_back(spare.back());
      spare.pop_back();
    }
  }
  while (streams_.size() < count) streams_.push_back(CudaStreamCreate(device));
}

StreamPool::~StreamPool() {
  FreeList& free = Free();
  std::lock_guard<std::mutex> lock(free.mu);
  std::vector<void*>& spare = free.streams[device_];
  for (void* stream : streams_) {
    if (stream != nullptr) spare.push_back(stream);
  }
}

void* StreamPool::Get(size_t index) const {
  return index < streams_.size() ? streams_[index] : nullptr;
}

size_t StreamPool::FreeStreams(int device) {
  FreeList& free = Free();
  std::lock_guard<std::mutex> lock(free.mu);
  auto it = free.streams.find(device);
  return it == free.streams.end() ? 0 : it->second.size();
}

}  // namespace tritonx
