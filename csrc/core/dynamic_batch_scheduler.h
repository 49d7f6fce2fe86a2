// DynamicBatchScheduler: Triton's default scheduler and dynamic batcher.
//
// Default scheduling (dynamic_batching off) sends one request per execution to the
// next free instance. The dynamic batcher follows Triton's rules: a batch takes
// requests in priority order while their non-batch dims match and the sum of their
// batch sizes stays within max_batch_size; it is sent at once when it reaches the
// largest preferred size or cannot grow, otherwise when its oldest request has waited
// max_queue_delay_microseconds — then as the largest preferred size formed so far, or
// whole.
//
// Threads: one worker per instance forms its own batch when it is free (one wake-up
// between a request's arrival and its execution), plus a sweeper thread only when some
// queue policy has timeouts, so that a timed-out request is answered even while every
// instance is busy. Batches run through the shared BatchRunner. An instance update
// starts a worker per added instance; a retired instance's worker finishes its batch
// and leaves, the queue staying with the others.
//
// A custom batching strategy library (BatchStrategy), when the model has one, is
// asked about each request of a batch being formed, after the rules above.
//
// Thread safety and ownership: see Scheduler.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "batch_runner.h"
#include "instance_scheduler.h"
#include "priority_queue.h"
#include "scheduler.h"

namespace tritonx {

class DynamicBatchScheduler final : public InstanceScheduler {
 public:
  DynamicBatchScheduler(const ModelSpec& spec, const SchedulerConfig& config,
                        std::vector<std::shared_ptr<Executor>> instances,
                        std::shared_ptr<ModelStats> stats,
                        std::shared_ptr<TensorArena> arena);
  ~DynamicBatchScheduler() override;
  DynamicBatchScheduler(const DynamicBatchScheduler&) = delete;
  DynamicBatchScheduler& operator=(const DynamicBatchScheduler&) = delete;

  Status Enqueue(const RequestPtr& request, bool caller_waits) override;
  bool Cancel(const RequestPtr& request) override;
  size_t PendingCount() const override;
  void Stop(bool drain) override;
  bool OnWorkerThread() const override;

 private:
  // With mu_ held: numbers `executor` as the next instance and starts its worker.
  void AddInstance(std::shared_ptr<Executor> executor, bool held) override;
  void WorkerLoop(int instance_index,
                  const std::shared_ptr<BatchRunner::Instance>& instance) override;
  // With mu_ held: whether the worker of a retired instance has nothing left to run.
  bool RetiredAndDone(int instance_index) const;
  // With mu_ held: an idle instance that may run a request on the caller's thread
  // right now, or -1. Claims it.
  int ClaimInlineInstance();
  void RunInline(int instance_index, const RequestPtr& request);
  void SweeperLoop();
  // With mu_ held: takes the next batch if one should be sent now. Otherwise returns
  // false and sets *wake_ns to when to look again (0: when a request arrives).
  bool TakeBatch(uint64_t now_ns, Batch* batch, uint64_t* wake_ns);

  const SchedulerConfig config_;
  BatchRunner runner_;
  std::vector<int32_t> preferred_;  // sorted ascending
  // config_.batch_strategy when it defines the batching functions; called under mu_.
  const BatchStrategy* strategy_ = nullptr;
  bool has_timeouts_ = false;

  // mu_, work_cv_, stopping_, table_, stop_mu_, running_workers_, exit_cv_: see
  // InstanceScheduler.
  std::condition_variable sweep_cv_;
  PriorityQueue queue_;
  std::thread sweeper_;

  // Inline dispatch. Waking a sleeping worker costs tens of microseconds on a busy
  // machine, more than a cheap model's whole execution; so when the enqueueing thread
  // would only wait for the response, nothing is queued, an instance is idle and its
  // recent executions were short, that thread runs the request itself. Never on a
  // frontend's thread (see Model::Enqueue). Guarded by mu_.
  std::vector<char> waiting_;  // worker i is blocked in work_cv_ with nothing to do
  std::vector<char> claimed_;  // instance i is running a request inline
  int inline_active_ = 0;
  bool inline_possible_ = false;
};

}  // namespace tritonx
