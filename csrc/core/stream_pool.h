// StreamPool: one CUDA stream per model instance, so instances on one GPU can overlap
// their copies and kernels. Without a usable GPU every stream is null and the pool is
// inert.
#pragma once

#include <cstddef>
#include <vector>

namespace tritonx {

class StreamPool {
 public:
  explicit StreamPool(size_t count);
  ~StreamPool();
  StreamPool(const StreamPool&) = delete;
  StreamPool& operator=(const StreamPool&) = delete;
  StreamPool(StreamPool&&) = delete;
  StreamPool& operator=(StreamPool&&) = delete;

  // The stream of instance `index` (a cudaStream_t), or null without CUDA.
  void* Get(size_t index) const;
  size_t size() const { return streams_.size(); }

 private:
  std::vector<void*> streams_;
};

}  // namespace tritonx
