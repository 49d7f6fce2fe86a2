// StreamPool: one CUDA stream per model instance, so instances on one GPU can overlap
// their copies and kernels. Without a usable GPU every stream is null and the pool is
// inert.
//
// Streams are never destroyed while the process runs: a released pool hands its
// streams back to a process-wide free list per device, and the next pool on that
// device takes them from there. Frameworks keep raw stream handles past the
// instance that used them (torch's pinned host allocator records an event on every
// stream a block was used with when the block is freed, which may be long after the
// model unloaded: a client still holds a response); a destroyed stream there is a
// use-after-free in the driver. A recycled stream is still valid, and at worst orders
// such an event after the new owner's work.
//
// Thread safety: immutable after construction; Get may be called from any thread;
// pools may be created and dropped concurrently (the free list is locked).
// Ownership: the pool holds its streams until it is dropped, then the free list
// does (until process exit).
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

  // Streams on the free list of `device` (tests).
  static size_t FreeStreams(int device);

 private:
  std::vector<void*> streams_;
  int device_;
};

}  // namespace tritonx
