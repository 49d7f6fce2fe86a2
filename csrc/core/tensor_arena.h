// TensorArena: a pool of host buffers reused across executions.
//
// Buffers are 64-byte aligned and sized in power-of-two classes so that a released
// buffer serves the next request of a similar size without a trip to the system
// allocator. With CUDA available the memory is pinned (cudaHostAlloc) so H2D copies
// can run asynchronously; with no usable GPU it falls back to pageable memory and says
// so once in the log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace tritonx {

struct ArenaStats {
  uint64_t reserved_bytes = 0;  // held from the system (in use + cached)
  uint64_t in_use_bytes = 0;    // handed out and not yet returned
  uint64_t peak_in_use_bytes = 0;
  uint64_t allocations = 0;  // Allocate calls
  uint64_t reuses = 0;       // Allocate calls served from the cache
  bool pinned = false;
};

class ArenaBlock;
// A buffer from the arena; the memory returns to the arena's cache when the last
// reference is dropped (from any thread).
using ArenaBuffer = std::shared_ptr<ArenaBlock>;

class TensorArena : public std::enable_shared_from_this<TensorArena> {
 public:
  // `max_cached_bytes`: released buffers beyond this total go back to the system.
  // `want_pinned`: use cudaHostAlloc when built with CUDA and a device is usable.
  static std::shared_ptr<TensorArena> Create(size_t max_cached_bytes, bool want_pinned);

  // The process-wide arena (256 MiB cache, pinned when possible).
  static std::shared_ptr<TensorArena> Global();

  TensorArena(const TensorArena&) = delete;
  TensorArena& operator=(const TensorArena&) = delete;
  ~TensorArena();

  // Returns a buffer of at least `bytes` bytes (64-byte aligned). Never fails short of
  // the system running out of memory (then returns null). Thread safe.
  ArenaBuffer Allocate(size_t bytes);

  ArenaStats Stats() const;
  bool pinned() const { return pinned_; }

 private:
  friend class ArenaBlock;
  TensorArena(size_t max_cached_bytes, bool pinned);
  void Release(void* ptr, size_t capacity);
  void* SystemAlloc(size_t bytes);
  void SystemFree(void* ptr);

  struct State;
  std::unique_ptr<State> state_;
  const size_t max_cached_bytes_;
  const bool pinned_;
};

class ArenaBlock {
 public:
  ArenaBlock(std::shared_ptr<TensorArena> arena, char* data, size_t capacity)
      : arena_(std::move(arena)), data_(data), capacity_(capacity) {}
  ~ArenaBlock() { arena_->Release(data_, capacity_); }
  ArenaBlock(const ArenaBlock&) = delete;
  ArenaBlock& operator=(const ArenaBlock&) = delete;

  char* data() const { return data_; }
  size_t capacity() const { return capacity_; }

 private:
  std::shared_ptr<TensorArena> arena_;
  char* data_;
  size_t capacity_;
};

}  // namespace tritonx
