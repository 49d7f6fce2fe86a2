// InflightLimit: a server-wide bound on requests accepted and not yet answered.
//
// Per-model `max_queue_size` is off by default (as in Triton), so without this a
// flood of requests could queue without bound and grow memory until the process
// dies. Every model admits a request here before queueing it and gives the slot back
// when the request is answered (or was never taken); past the limit new requests
// fail UNAVAILABLE at once and the server stays responsive.
//
// Thread safety: all methods are thread safe and lock free. Ownership: one per server
// (ServerContext), shared with every model's InflightCounter, so it outlives every
// request admitted against it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

namespace tritonx {

class InflightLimit {
 public:
  // 0: unlimited. Changing it while serving affects later admissions only.
  void SetLimit(int64_t limit) { limit_.store(limit, std::memory_order_relaxed); }
  int64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  int64_t inflight() const { return inflight_.load(std::memory_order_relaxed); }
  // The count itself, for waits that watch it while spinning (StubExecutor).
  const std::atomic<int64_t>& inflight_word() const { return inflight_; }

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

// One model's admission: each request takes a slot of the server's InflightLimit and
// counts here until it is answered with FINAL (queued, executing or streaming); a
// wait for the count to reach zero lets drains on shutdown and unload block instead
// of polling.
//
// Thread safety: every method is thread safe. Ownership: shared by the Model and each
// request it admitted (a decoupled request may outlive its model); holds the server's
// limit alive for them.
class InflightCounter {
 public:
  explicit InflightCounter(std::shared_ptr<InflightLimit> server)
      : server_(std::move(server)) {}

  const InflightLimit& server() const { return *server_; }

  // Admits one request: false (nothing taken) when the server is at its limit.
  bool TryAdmit() {
    if (!server_->TryAcquire()) return false;
    count_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // Gives back what TryAdmit took.
  void Release() {
    server_->Release();
    // The lock and notify only when a drain is waiting: at low load every request
    // takes the count to zero. (Dekker pairing with WaitIdle: either this sees the
    // waiter, or the waiter sees the zero.)
    if (count_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
        waiters_.load(std::memory_order_seq_cst) > 0) {
      // Taking the lock orders this notify after a waiter's check of the count.
      std::lock_guard<std::mutex> lock(mu_);
      idle_.notify_all();
    }
  }
  int64_t count() const { return count_.load(std::memory_order_acquire); }
  // Blocks until nothing is in flight or `timeout` passes; true when idle.
  bool WaitIdle(std::chrono::nanoseconds timeout) {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    bool idle;
    {
      std::unique_lock<std::mutex> lock(mu_);
      idle = idle_.wait_for(lock, timeout, [this] {
        return count_.load(std::memory_order_seq_cst) == 0;
      });
    }
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
    return idle;
  }

 private:
  const std::shared_ptr<InflightLimit> server_;
  std::atomic<int64_t> count_{0};
  std::atomic<int> waiters_{0};  // threads in WaitIdle
  std::mutex mu_;
  std::condition_variable idle_;
};

}  // namespace tritonx
