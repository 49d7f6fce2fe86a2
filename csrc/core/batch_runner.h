// BatchRunner: runs one batch on one instance and answers its requests. Shared by
// every scheduler kind that executes on instances (today the dynamic batcher; the
// sequence batcher next), so that gathering inputs, statistics, output filtering and
// ordered delivery behave the same whichever scheduler formed the batch.
//
// For each batch: gather inputs (when the executor wants them), Execute, scatter
// gathered outputs, record Triton's statistics, and deliver the responses — in
// dispatch order when preserve_ordering is set. A decoupled model's requests are
// answered by its backend through their senders instead; the runner only answers
// them when the execution itself failed.
//
// Ownership: holds the statistics and the arena (shared with the scheduler that owns
// it); the scheduler keeps its instances (BatchRunner::Instance) in a table of its
// own, which may grow and shrink while batches run (instance updates), and hands the
// one a batch runs on to Run. Thread safety: Run may be called concurrently for
// different instances (one batch per instance at a time); every other method is
// thread safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "executor.h"
#include "model_spec.h"
#include "model_stats.h"
#include "tensor_arena.h"

namespace tritonx {

class BatchRunner {
 public:
  // One instance as the runner sees it: its executor and its smoothed execution time
  // (for inline dispatch). A scheduler makes one per instance it adds; the instance's
  // worker holds it while it runs, so that the scheduler's table can change meanwhile.
  // Thread safety: the executor is fixed at construction, the timings are atomics.
  struct Instance {
    explicit Instance(std::shared_ptr<Executor> e) : executor(std::move(e)) {}
    const std::shared_ptr<Executor> executor;
    std::atomic<uint64_t> recent_exec_ns{0};
    std::atomic<uint32_t> exec_samples{0};
  };

  BatchRunner(const ModelSpec& spec, bool preserve_ordering,
              std::shared_ptr<ModelStats> stats, std::shared_ptr<TensorArena> arena);
  BatchRunner(const BatchRunner&) = delete;
  BatchRunner& operator=(const BatchRunner&) = delete;

  const ModelSpec& spec() const { return spec_; }
  ModelStats& stats() { return *stats_; }

  // The dispatch sequence number of the next batch. Take it where the scheduler
  // decides dispatch order (under its own lock): under preserve_ordering, responses
  // leave in this order.
  uint64_t NextSequence() { return next_sequence_.fetch_add(1); }

  // Called after a successful execution of a non-decoupled model, before its
  // responses leave, with the batch's responses in place (the sequence batcher keeps
  // implicit state outputs here). Set before the first Run.
  void SetBeforeDeliver(std::function<void(Batch&)> hook) {
    before_deliver_ = std::move(hook);
  }

  // Iterative sequences: a request the backend rescheduled (InferenceRequest::
  // reschedule) after a successful execution is neither answered nor counted; it
  // stays in Batch::requests for the scheduler to queue again. Off by default (a
  // flag set elsewhere is ignored). Set before the first Run.
  void AllowReschedule() { allow_reschedule_ = true; }

  // Runs `batch` on `instance` (the one numbered batch.instance_index) and answers
  // every request in it.
  void Run(Batch& batch, Instance& instance, uint64_t sequence);

  // Answers `requests` with `status`, counting each as a failure for `reason`.
  void Fail(std::vector<RequestPtr>& requests, const Status& status,
            FailureReason reason);
  // Answers requests a stop without drain gives up: UNAVAILABLE "model 'm' is
  // unloading, request abandoned", counted as OTHER failures.
  void FailAbandoned(std::vector<RequestPtr>& requests);

  // Whether `instance` has run enough executions, all short, that running one
  // request on a waiting caller's thread beats waking its worker.
  static bool MeasuredCheap(const Instance& instance);

 private:
  struct DeliveryItem {
    RequestPtr request;
    std::unique_ptr<InferenceResponse> response;
  };

  void FinishBatch(Batch& batch, Status status, uint64_t start, uint64_t gathered,
                   uint64_t sequence);
  void Deliver(uint64_t sequence, std::vector<DeliveryItem> items);
  // Whether `request` is to run again (see AllowReschedule) rather than be answered.
  bool Rescheduled(const InferenceRequest& request) const;
  // A response cache miss executed: cache the response, record the miss.
  void CacheResponse(const InferenceRequest& request,
                     const InferenceResponse& response);

  const ModelSpec spec_;  // a copy: the runner may outlive its Model (see ~Model)
  const bool preserve_ordering_;
  std::shared_ptr<ModelStats> stats_;
  std::shared_ptr<TensorArena> arena_;
  std::atomic<uint64_t> next_sequence_{0};
  std::function<void(Batch&)> before_deliver_;
  bool allow_reschedule_ = false;

  // preserve_ordering: batches deliver their responses in dispatch order.
  std::mutex delivery_mu_;
  uint64_t next_delivery_ = 0;
  std::map<uint64_t, std::vector<DeliveryItem>> held_;
  bool delivering_ = false;
};

// Joins a scheduler's worker threads when it stops. The last reference to a model
// can be dropped by one of its own workers (in a response callback); that worker
// cannot join itself, so it is detached and exits on its own.
void JoinWorkers(std::vector<std::thread>& workers);

}  // namespace tritonx
