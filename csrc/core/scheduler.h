// Scheduler: queues a model's requests and runs them on its instances.
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
// instance is busy.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "executor.h"
#include "model_spec.h"
#include "model_stats.h"
#include "priority_queue.h"
#include "scheduler_config.h"
#include "tensor_arena.h"

namespace tritonx {

class Scheduler {
 public:
  Scheduler(const ModelSpec& spec, const SchedulerConfig& config,
            std::vector<std::shared_ptr<Executor>> instances,
            std::shared_ptr<ModelStats> stats, std::shared_ptr<TensorArena> arena);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Takes a validated request. UNAVAILABLE when its queue level is full or the
  // scheduler is stopping (the request is then not taken). With `caller_waits` (the
  // calling thread only waits for this response) the request may run on the calling
  // thread; see Model::Enqueue. Thread safe.
  Status Enqueue(const RequestPtr& request, bool caller_waits = false);

  // Removes a queued request and answers it CANCELLED; false if not queued.
  bool Cancel(const RequestPtr& request);

  size_t PendingCount() const;

  // Stops accepting and joins the workers. With `drain` they first run every queued
  // request; without, queued requests fail UNAVAILABLE and only the batches already
  // executing finish. Blocking; idempotent; concurrent callers wait for the first.
  void Stop(bool drain = true);

  // True on one of this scheduler's own worker threads (e.g. inside a response
  // callback), where the scheduler must not be destroyed.
  bool OnWorkerThread() const;

 private:
  struct DeliveryItem {
    RequestPtr request;
    std::unique_ptr<InferenceResponse> response;
  };

  void WorkerLoop(int instance_index);
  // With mu_ held: an idle instance that may run `request` on the caller's thread
  // right now, or -1. Claims it.
  int ClaimInlineInstance();
  void RunInline(int instance_index, const RequestPtr& request);
  void SweeperLoop();
  // With mu_ held: takes the next batch if one should be sent now. Otherwise returns
  // false and sets *wake_ns to when to look again (0: when a request arrives).
  bool TakeBatch(uint64_t now_ns, Batch* batch, uint64_t* wake_ns);
  void RunBatch(Executor& executor, Batch& batch, uint64_t sequence);
  // Scatters gathered outputs, records statistics and delivers the responses.
  void FinishBatch(Batch& batch, Status status, uint64_t start, uint64_t gathered,
                   uint64_t sequence);
  void FinishResponse(const InferenceRequest& request, InferenceResponse* response);
  void Deliver(uint64_t sequence, std::vector<DeliveryItem> items);
  void FailRequests(std::vector<RequestPtr>& requests, const Status& status,
                    FailureReason reason);

  const ModelSpec spec_;  // a copy: the scheduler may outlive its Model (see ~Model)
  const SchedulerConfig config_;
  std::vector<std::shared_ptr<Executor>> instances_;
  std::shared_ptr<ModelStats> stats_;
  std::shared_ptr<TensorArena> arena_;
  std::vector<int32_t> preferred_;  // sorted ascending
  bool has_timeouts_ = false;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable sweep_cv_;
  PriorityQueue queue_;
  bool stopping_ = false;
  uint64_t next_sequence_ = 0;
  std::vector<std::thread> workers_;
  std::thread sweeper_;
  std::mutex stop_mu_;  // serializes Stop()
  // Workers still inside WorkerLoop; a worker that called Stop() itself is detached,
  // and the destructor waits for it here.
  int running_workers_ = 0;
  std::condition_variable exit_cv_;

  // Inline dispatch. Waking a sleeping worker costs tens of microseconds on a busy
  // machine, more than a cheap model's whole execution; so when the enqueueing thread
  // would only wait for the response, nothing is queued, an instance is idle and its
  // recent executions were short, that thread runs the request itself. Never on a
  // frontend's thread (see Model::Enqueue). Guarded by mu_, except the timings
  // (written after each run).
  std::vector<char> waiting_;  // worker i is blocked in work_cv_ with nothing to do
  std::vector<char> claimed_;  // instance i is running a request inline
  int inline_active_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> recent_exec_ns_;  // smoothed, per instance
  std::unique_ptr<std::atomic<uint32_t>[]> exec_samples_;
  bool inline_possible_ = false;

  // preserve_ordering: batches deliver their responses in dispatch order.
  std::mutex delivery_mu_;
  uint64_t next_delivery_ = 0;
  std::map<uint64_t, std::vector<DeliveryItem>> held_;
  bool delivering_ = false;
};

}  // namespace tritonx
