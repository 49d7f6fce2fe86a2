// StreamPool: one CUDA stream per model instance, so instances on one GPU can overlap
// their copies and kernels. Without a usable GPU every stream is null and the pool is
// inert.
//
// Thread safety: immutable after construction; Get may be called from any thread.
// Ownership: the pool owns its streams and destroys them with itself (work still
// queued on a stream completes first, as cudaStreamDestroy defers the release).
#pragma once

#include <cstddef>
#include <vector>

namespace tritonx {

class StreamPool {
 public:
  // `count` streams on `device` (< 0: the creating thread's current device).
  explicit StreamPool(size_t count, int device = -1);
  ~StreamPool();
  StreamPool(const StreamPool&) = delete;
  StreamPool& operator=(const StreamPool&) = delete;
  StreamPool(StreamPool&&) = delete;
  StreamPool& operator=(StreamPool&&) = delete;

  // The stream of instance `index` (a cudaStream_t), or null without CUDA.
  void* Get(size_t index) const;
  size_t size() const { return streams_.size(); }
  int device() const { return device_; }

 private:
  std::vector<void*> streams_;
  int device_;
};

}  // namespace tritonx
