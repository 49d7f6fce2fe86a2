// Scheduler: how a model's requests reach its instances. A Model owns exactly one,
// chosen by its config (MakeScheduler); every kind answers the same contract, so the
// model, the frontends and the statistics never depend on which one runs.
//
// Kinds: DynamicBatchScheduler (Triton's default scheduler and dynamic batcher). The
// sequence batcher and the ensemble scheduler plug in behind this interface; what
// every kind that runs batches on instances shares lives in BatchRunner.
//
// Ownership: Enqueue shares ownership of the request with the scheduler until the
// request is answered; the caller may keep its own reference (to cancel it). A taken
// request is answered exactly once, from whatever thread finishes it, possibly the
// caller's own (an immediate failure, or inline dispatch when `caller_waits`).
//
// Thread safety: every method is thread safe. Stop() blocks; it must not be called
// from one of the scheduler's own worker threads except through ~Model's hand-off.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include "executor.h"
#include "infer_request.h"
#include "model_spec.h"
#include "model_stats.h"
#include "scheduler_config.h"
#include "status.h"
#include "tensor_arena.h"

namespace tritonx {

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // Takes a validated request. UNAVAILABLE when it cannot be queued (queue full,
  // stopping): then it was not taken and will not be answered. `caller_waits`: the
  // calling thread only waits for this answer, so the request may run on it (see
  // Model::Enqueue).
  virtual Status Enqueue(const RequestPtr& request, bool caller_waits) = 0;

  // Removes a queued request and answers it CANCELLED; false when it is no longer
  // queued (it is then only marked cancelled, for the backend to see).
  virtual bool Cancel(const RequestPtr& request) = 0;

  // Runs `requests` (validated, not queued) as one batch on instance `instance`, on
  // that instance's worker, before anything queued and outside the batching rules:
  // Triton's model warmup hands each instance a sample's requests together this way.
  // They are answered and counted like any executed request. UNAVAILABLE when
  // stopping (nothing taken); UNSUPPORTED for a scheduler without instances of its
  // own (the default). A sequence batcher runs them outside every sequence, as
  // Triton's warmup does.
  virtual Status ExecuteOn(int instance, std::vector<RequestPtr> requests) {
    (void)instance;
    (void)requests;
    return Status(StatusCode::kUnsupported,
                  "this scheduler cannot run a batch on a given instance");
  }

  // Triton's in-place instance update: adds `added` as new instances, numbered on
  // after every instance so far (a number is never reused), and retires the
  // instances numbered in `retired`. A retired instance takes no new work: it
  // finishes its running batch and the batches ExecuteOn handed it — under the
  // sequence batcher also every sequence bound to one of its slots, however long
  // that takes — and then its worker leaves (see WaitRetired). Requests queued for
  // the model are not touched. INVALID_ARG when a number is unknown or already
  // retired or no instance would remain (nothing changes then), UNAVAILABLE when
  // stopping; UNSUPPORTED for a scheduler without instances of its own (the default).
  //
  // `hold_added`: the added instances run only what ExecuteOn hands them (warmup,
  // as Triton warms an instance up before it serves) until ReleaseInstances.
  virtual Status UpdateInstances(std::vector<std::shared_ptr<Executor>> added,
                                 const std::vector<int>& retired,
                                 bool hold_added = false) {
    (void)added;
    (void)retired;
    (void)hold_added;
    return Status(StatusCode::kUnsupported,
                  "this scheduler has no instances to update");
  }

  // Lets held instances take the model's work. INVALID_ARG (nothing released) for a
  // number that names no held instance.
  virtual Status ReleaseInstances(const std::vector<int>& instances) {
    (void)instances;
    return Status(StatusCode::kUnsupported,
                  "this scheduler has no instances to release");
  }

  // Blocks until every instance numbered in `instances` was retired and its worker
  // has left (it will run nothing more: its backend instance may be finalized), or
  // `timeout` passes, or the scheduler stops; true when all have left.
  virtual bool WaitRetired(const std::vector<int>& instances,
                           std::chrono::nanoseconds timeout) {
    (void)instances;
    (void)timeout;
    return true;
  }

  // Requests waiting for an instance. (Requests in flight — queued, executing or
  // streaming — are counted by the Model, which admits them.)
  virtual size_t PendingCount() const = 0;

  // Stops accepting and joins the worker threads. With `drain` every queued request
  // runs first; without, queued requests fail UNAVAILABLE and only executions already
  // running finish. Blocking; idempotent; concurrent callers wait for the first.
  virtual void Stop(bool drain) = 0;

  // True on one of this scheduler's own worker threads (e.g. inside a response
  // callback), where the scheduler must not be destroyed.
  virtual bool OnWorkerThread() const = 0;
};

// The scheduler for `config`. `spec` is copied: a scheduler may outlive its Model
// (see ~Model).
std::unique_ptr<Scheduler> MakeScheduler(
    const ModelSpec& spec, const SchedulerConfig& config,
    std::vector<std::shared_ptr<Executor>> instances, std::shared_ptr<ModelStats> stats,
    std::shared_ptr<TensorArena> arena);

}  // namespace tritonx
