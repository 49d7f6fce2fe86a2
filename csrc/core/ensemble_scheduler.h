// EnsembleScheduler: runs Triton ensemble models — a DAG of steps, each an inference
// on another (composing) model of the same server.
//
// For each ensemble request a run (EnsembleRun, ensemble_run.h) tracks which ensemble
// tensors exist; a step is submitted as soon as all its inputs do, so independent
// branches run concurrently. Each step is an ordinary InferenceRequest enqueued on
// the composing Model found in the server's ModelRegistry: composing models keep
// their own schedulers, batchers (an ensemble's steps batch with direct traffic) and
// statistics. Tensors pass between steps without copies: a step's inputs point into
// the producing response's buffers and keep them alive. A decoupled composing model
// streams: each of its responses triggers the downstream steps once more, and the
// ensemble (then decoupled itself) answers once per complete set of outputs.
//
// No thread of its own: steps are launched from the thread that completed the
// previous one, which may run a cheap step inline (Model::Enqueue with
// caller_waits) instead of waking a worker; the first steps only when the
// ensemble's own caller allowed it.
//
// Ownership: holds its plan and statistics, and the registry only weakly (the
// registry holds the models, this scheduler among them). A run holds the composing
// models it uses until it ends, so an unload waits for it as for any request.
// Thread safety: see Scheduler.
#pragma once

#include <atomic>
#include <memory>

#include "ensemble_spec.h"
#include "model_registry.h"
#include "scheduler.h"

namespace tritonx {

class EnsembleRunTable;

class EnsembleScheduler final : public Scheduler {
 public:
  EnsembleScheduler(const ModelSpec& spec, const EnsembleSpec& ensemble,
                    std::shared_ptr<ModelStats> stats,
                    std::weak_ptr<ModelRegistry> registry);

  Status Enqueue(const RequestPtr& request, bool caller_waits) override;
  // Marks the request cancelled and cancels its steps in flight (queued steps are
  // answered CANCELLED, which ends the ensemble request). False: nothing was queued
  // under this scheduler itself.
  bool Cancel(const RequestPtr& request) override;
  size_t PendingCount() const override { return 0; }
  // Refuses new requests; runs in flight finish on their own (they hold what they
  // use), and Model::WaitIdle waits for them.
  void Stop(bool drain) override;
  bool OnWorkerThread() const override { return false; }

 private:
  std::shared_ptr<const EnsemblePlan> plan_;
  std::shared_ptr<ModelStats> stats_;
  std::weak_ptr<ModelRegistry> registry_;
  std::shared_ptr<EnsembleRunTable> runs_;  // runs in flight, for Cancel
  std::atomic<bool> stopping_{false};
};

}  // namespace tritonx
