// EnsembleRun: the state of one ensemble request while it runs — which ensemble
// tensors exist, which steps are ready, in flight or done, and the responses owed to
// the request — and EnsembleRunTable, the runs in flight by request uid.
//
// Split from ensemble_scheduler.{h,cc} along its seam: the scheduler is the facade
// the Model sees (admission, Stop, finding a run to cancel) and holds what lives as
// long as the model (plan, statistics, registry); a run is the dataflow engine of a
// single request and lives as long as that request's steps (it may outlive its
// scheduler). Nothing outside the two ensemble_scheduler/ensemble_run pairs includes
// this header.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ensemble_sequence.h"
#include "ensemble_spec.h"
#include "infer_request.h"
#include "model_registry.h"
#include "model_stats.h"

namespace tritonx {

// The runs in flight by request uid, for Cancel. Shared by the scheduler and its runs
// (a run may outlive its scheduler); entries are weak, removed by the run's
// destructor. Thread safe.
class EnsembleRunTable {
 public:
  void Add(uint64_t uid, std::weak_ptr<void> run) {
    std::lock_guard<std::mutex> lock(mu_);
    runs_[uid] = std::move(run);
  }
  void Remove(uint64_t uid) {
    std::lock_guard<std::mutex> lock(mu_);
    runs_.erase(uid);
  }
  std::shared_ptr<void> Find(uint64_t uid) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(uid);
    return it == runs_.end() ? nullptr : it->second.lock();
  }

 private:
  std::mutex mu_;
  std::unordered_map<uint64_t, std::weak_ptr<void>> runs_;
};

// The state of one ensemble request. Shared by the callbacks of its steps; ends when
// the last step has answered FINAL. Ownership: holds the ensemble request, the
// plan, and the composing models of its steps (so an unload waits for the run); step
// requests hold the run through their response callbacks. Thread safety: every field
// below `mu_` is guarded by it; requests are launched and responses delivered outside
// it (a step may run inline and call back into this run; a response consumer may need
// the GIL, which a Python step that sends from its own execute already holds).
class EnsembleRun : public std::enable_shared_from_this<EnsembleRun> {
 public:
  EnsembleRun(std::shared_ptr<const EnsemblePlan> plan,
              std::shared_ptr<ModelStats> stats, RequestPtr parent,
              std::shared_ptr<EnsembleRunTable> table)
      : plan_(std::move(plan)),
        stats_(std::move(stats)),
        parent_(std::move(parent)),
        table_(std::move(table)) {}
  ~EnsembleRun() { table_->Remove(parent_->uid); }
  EnsembleRun(const EnsembleRun&) = delete;
  EnsembleRun& operator=(const EnsembleRun&) = delete;

  void Start(const std::shared_ptr<ModelRegistry>& registry, bool caller_waits);
  void CancelSteps();

 private:
  struct Value {
    uint64_t iteration = 0;
    Tensor tensor;
    bool present = false;    // false: the producer left this optional tensor out
    int64_t batch_size = 0;  // 0: the producing model does not batch
    int refs = 0;            // readers still to take it (steps, the response)
    // Produced by a step: `sequence` is the sequence it belongs to (the ensemble
    // request's inputs have none of their own).
    bool tagged = false;
    SequenceTag sequence;
  };
  struct Launch {
    int step = 0;
    RequestPtr request;
    std::string warning;  // logged when launched, outside mu_ (the sink may block)
  };
  struct Updated {
    int tensor;
    uint64_t iteration;
  };

  // All with mu_ held.
  Value* Find(int tensor, uint64_t iteration);
  void Release(int tensor, uint64_t iteration);
  void AddValue(int tensor, Tensor data, bool present, int64_t batch_size,
                const SequenceTag* sequence, std::vector<Updated>* updated);
  void NextSteps(const std::vector<Updated>& updated, std::vector<Launch>* launches);
  RequestPtr MakeStepRequest(int step, uint64_t iteration, std::string* warning);
  void CollectOutputs(const std::vector<Updated>& updated);
  void Fail(const Status& status);
  void MaybeFinish();

  void OnStepResponse(int step, InferenceRequest* step_request,
                      const SequenceTag& sequence,
                      std::unique_ptr<InferenceResponse> response, uint32_t flags);
  void LaunchAll(std::vector<Launch> launches, bool caller_waits);
  void Flush();
  void CacheResponse(const InferenceResponse& response);

  const std::shared_ptr<const EnsemblePlan> plan_;
  const std::shared_ptr<ModelStats> stats_;
  const RequestPtr parent_;
  const std::shared_ptr<EnsembleRunTable> table_;
  std::vector<std::shared_ptr<Model>> models_;  // per step; fixed after Start

  std::mutex mu_;
  std::vector<std::vector<Value>> values_;  // tensor id -> one value per iteration
  std::vector<uint64_t> next_iteration_;    // tensor id -> next iteration number
  std::vector<int> readers_;                // tensor id -> active readers per value
  std::vector<char> active_;                // step -> needed for the requested outputs
  std::vector<char> requested_;             // tensor id -> a requested output
  std::vector<std::pair<int, std::weak_ptr<InferenceRequest>>> inflight_;
  int inflight_steps_ = 0;
  bool done_ = false;       // the final answer is decided (queued or sent)
  bool responded_ = false;  // a response with outputs was produced
  uint64_t compute_input_ns_ = 0, compute_infer_ns_ = 0, compute_output_ns_ = 0;
  std::unique_ptr<InferenceResponse> held_;  // a non-decoupled ensemble's answer
  // Responses to the ensemble request, delivered in order by one thread at a time.
  std::deque<std::pair<std::unique_ptr<InferenceResponse>, uint32_t>> outbox_;
  bool sending_ = false;
};

}  // namespace tritonx
