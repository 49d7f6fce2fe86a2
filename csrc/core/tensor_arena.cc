#include "tensor_arena.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda_runtime.h"

namespace tritonx {
namespace {
constexpr size_t kAlignment = 64;
constexpr size_t kMinBlock = 256;

size_t SizeClass(size_t bytes) {
  size_t size = kMinBlock;
  while (size < bytes) size <<= 1;
  return size;
}
}  // namespace

struct TensorArena::State {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_lists;
  size_t cached_bytes = 0;
  ArenaStats stats;
};

std::shared_ptr<TensorArena> TensorArena::Create(size_t max_cached_bytes,
                                                 bool want_pinned) {
  bool pinned = want_pinned && CudaUsable();
  return std::shared_ptr<TensorArena>(new TensorArena(max_cached_bytes, pinned));
}

std::shared_ptr<TensorArena> TensorArena::Global() {
  // Probe CUDA before entering the static initializer: the probe may log, and logging
  // must not happen while other threads are blocked on this initializer.
  const bool pinned = CudaUsable();
  static std::shared_ptr<TensorArena> global =
      std::shared_ptr<TensorArena>(new TensorArena(256u << 20, pinned));
  return global;
}

TensorArena::TensorArena(size_t max_cached_bytes, bool pinned)
    : state_(std::make_unique<State>()),
      max_cached_bytes_(max_cached_bytes),
      pinned_(pinned) {
  state_->stats.pinned = pinned;
}

TensorArena::~TensorArena() {
  for (auto& [size, list] : state_->free_lists) {
    for (void* ptr : list) SystemFree(ptr);
  }
}

void* TensorArena::SystemAlloc(size_t bytes) {
  if (pinned_) {
    if (void* ptr = CudaHostAlloc(bytes)) return ptr;  // 256-byte aligned by CUDA
  }
  return std::aligned_alloc(kAlignment, bytes);
}

void TensorArena::SystemFree(void* ptr) {
  if (pinned_) {
    CudaHostFree(ptr);
  } else {
    std::free(ptr);
  }
}

ArenaBuffer TensorArena::Allocate(size_t bytes) {
  const size_t capacity = SizeClass(bytes == 0 ? 1 : bytes);
  void* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stats.allocations += 1;
    auto it = state_->free_lists.find(capacity);
    if (it != state_->free_lists.end() && !it->second.empty()) {
      ptr = it->second.back();
      it->second.pop_back();
      state_->cached_bytes -= capacity;
      state_->stats.reuses += 1;
    }
    state_->stats.in_use_bytes += capacity;
    if (state_->stats.in_use_bytes > state_->stats.peak_in_use_bytes) {
      state_->stats.peak_in_use_bytes = state_->stats.in_use_bytes;
    }
    if (ptr == nullptr) state_->stats.reserved_bytes += capacity;
  }
  if (ptr == nullptr) {
    // Allocate outside the lock: a system allocation (or cudaHostAlloc) is slow.
    ptr = SystemAlloc(capacity);
    if (ptr == nullptr) {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->stats.in_use_bytes -= capacity;
      state_->stats.reserved_bytes -= capacity;
      return nullptr;
    }
  }
  return std::make_shared<ArenaBlock>(shared_from_this(), static_cast<char*>(ptr),
                                      capacity);
}

void TensorArena::Release(void* ptr, size_t capacity) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stats.in_use_bytes -= capacity;
    if (state_->cached_bytes + capacity <= max_cached_bytes_) {
      state_->free_lists[capacity].push_back(ptr);
      state_->cached_bytes += capacity;
      return;
    }
    state_->stats.reserved_bytes -= capacity;
  }
  SystemFree(ptr);
}

ArenaStats TensorArena::Stats() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->stats;
}

}  // namespace tritonx
