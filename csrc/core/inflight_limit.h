// InflightLimit: a server-wide bound on requests accepted and not yet answered.
//
// Per-model `max_queue_size` is off by default (as in Triton), so without this a
// flood of requests could queue without bound and grow memory until the process
// dies. Every model admits a request here before queueing it and gives the slot back
// when the request is answered (or was never taken); past the limit new requests
// fail UNAVAILABLE at once and the server stays responsive.
//
// Thread safety: all methods are thread safe and lock free. Ownership: one process-
// wide instance (Global()) lives for the whole process; requests keep a plain pointer
// to it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace tritonx {

class InflightLimit {
 public:
  static InflightLimit& Global();

  // 0: unlimited. Changing it while serving affects later admissions only.
  void SetLimit(int64_t limit) { limit_.store(limit, std::memory_order_relaxed); }
  int64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  int64_t inflight() const { return inflight_.load(std::memory_order_relaxed); }

  // Takes a slot; false (nothing taken) when the limit is reached.
  bool TryAcquire() {
    const int64_t now = inflight_.fetch_add(1, std::memory_order_relaxed) + 1;
    const int64_t limit = limit_.load(std::memory_order_relaxed);
    if (limit > 0 && now > limit) {
      inflight_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  void Release() { inflight_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> limit_{0};
  std::atomic<int64_t> inflight_{0};
};

// One model's requests admitted and not yet answered with FINAL (queued, executing
// or streaming), and a wait for that to reach zero (drains on shutdown and unload
// block on it instead of polling).
//
// Thread safety: every method is thread safe. Ownership: shared by the Model and each
// request it admitted (a decoupled request may outlive its model).
class InflightCounter {
 public:
  void Add() { count_.fetch_add(1, std::memory_order_relaxed); }
  void Release() {
    if (count_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // Taking the lock orders this notify after a waiter's check of the count.
      std::lock_guard<std::mutex> lock(mu_);
      idle_.notify_all();
    }
  }
  int64_t count() const { return count_.load(std::memory_order_acquire); }
  // Blocks until nothing is in flight or `timeout` passes; true when idle.
  bool WaitIdle(std::chrono::nanoseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return idle_.wait_for(lock, timeout, [this] { return count() == 0; });
  }

 private:
  std::atomic<int64_t> count_{0};
  std::mutex mu_;
  std::condition_variable idle_;
};

}  // namespace tritonx
