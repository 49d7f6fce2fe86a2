// WorkerPool: threads for the gRPC server's control-plane handlers. They are
// started on demand up to a cap, so that a few slow calls (model loads) do not
// queue the quick ones behind them, and no thread exists until one is needed.
//
// A pool for bulk work (the HTTP server's large-body parsing) may run its threads
// at a lower scheduling priority (a positive nice increment, per thread on Linux):
// on a machine with few cores, an event-loop thread that wakes for a health check
// then preempts a parse that takes a hundred milliseconds instead of queueing
// behind it for scheduler ticks.
//
// Thread safety: Submit and Shutdown may be called from any thread. Ownership:
// owned by its server; tasks run on the pool's own threads (on Submit's caller
// only when the pool has none and none can be started).
#pragma once

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/logging.h"

namespace tritonx {
namespace grpcfe {

class WorkerPool {
 public:
  // `name` says which pool in the warning logged when no thread can start.
  explicit WorkerPool(size_t max_threads, int nice_increment = 0,
                      const char* name = "worker")
      : max_threads_(max_threads ? max_threads : 1),
        nice_increment_(nice_increment),
        name_(name) {}
  ~WorkerPool() { Shutdown(); }

  // Queues `task` for a pool thread, starting one if none is idle and the cap
  // allows. If no thread can be started (the process' thread or memory limit:
  // a container's pids.max, RLIMIT_AS), a thread the pool already has takes the
  // task when it is free; a pool without any runs it on the caller's thread, so
  // the work is done late rather than the process ended by the exception.
  void Submit(std::function<void()> task) {
    std::unique_lock<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
    if (queue_.size() > idle_ && threads_.size() < max_threads_) {
      try {
        threads_.emplace_back([this] { Loop(); });
        return;
      } catch (const std::exception& error) {  // std::system_error, or bad_alloc
        const bool inline_run = threads_.empty();
        std::function<void()> run;
        if (inline_run) {
          run = std::move(queue_.back());
          queue_.pop_back();
        } else {
          cv_.notify_one();
        }
        lock.unlock();
        WarnNoThread(error.what(), inline_run);
        if (run) run();
        return;
      }
    }
    cv_.notify_one();
  }

  // Runs what is queued, then joins every thread.
  void Shutdown() {
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      threads.swap(threads_);
    }
    cv_.notify_all();
    for (auto& thread : threads) thread.join();
  }

 private:
  void Loop() {
    if (nice_increment_ > 0) {
      // Best effort: lowering one's own priority needs no privilege; on failure the
      // thread keeps the process' priority.
      const auto tid = static_cast<id_t>(syscall(SYS_gettid));
      errno = 0;
      const int current = getpriority(PRIO_PROCESS, tid);
      if (errno == 0) setpriority(PRIO_PROCESS, tid, current + nice_increment_);
    }
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      ++idle_;
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      --idle_;
      if (queue_.empty()) return;  // stopping and drained
      auto task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  // One warning per 10 s per process: at a thread limit every Submit may fail.
  void WarnNoThread(const char* what, bool inline_run) {
    static std::atomic<int64_t> last_warning{-10};
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    int64_t last = last_warning.load(std::memory_order_relaxed);
    if (now - last < 10 || !last_warning.compare_exchange_strong(last, now)) return;
    Log(LogLevel::kWarning,
        std::string("the ") + name_ + " pool cannot start a thread (" + what + "): " +
            (inline_run ? "its tasks run on the threads that submit them"
                        : "its tasks wait for the threads it has"));
  }

  const size_t max_threads_;
  const int nice_increment_;
  const char* const name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stop_ = false;
};

}  // namespace grpcfe
}  // namespace tritonx
