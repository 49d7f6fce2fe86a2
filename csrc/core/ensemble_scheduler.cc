#include "ensemble_scheduler.h"

#include <utility>

#include "ensemble_run.h"

namespace tritonx {

EnsembleScheduler::EnsembleScheduler(const ModelSpec& spec,
                                     const EnsembleSpec& ensemble,
                                     std::shared_ptr<ModelStats> stats,
                                     std::weak_ptr<ModelRegistry> registry)
    : plan_(std::make_shared<const EnsemblePlan>(spec, ensemble)),
      stats_(std::move(stats)),
      registry_(std::move(registry)),
      runs_(std::make_shared<EnsembleRunTable>()) {}

Status EnsembleScheduler::Enqueue(const RequestPtr& request, bool caller_waits) {
  if (stopping_.load(std::memory_order_acquire)) {
    return Status(StatusCode::kUnavailable,
                  "model '" + plan_->model.name + "' is unloading, request rejected");
  }
  request->enqueue_ns = NowNs();
  request->dispatch_ns = request->enqueue_ns;
  auto run = std::make_shared<EnsembleRun>(plan_, stats_, request, runs_);
  runs_->Add(request->uid, run);
  run->Start(registry_.lock(), caller_waits);
  return Status::Ok();
}

bool EnsembleScheduler::Cancel(const RequestPtr& request) {
  request->MarkCancelled();
  if (auto run = std::static_pointer_cast<EnsembleRun>(runs_->Find(request->uid))) {
    run->CancelSteps();
  }
  return false;
}

void EnsembleScheduler::Stop(bool /*drain*/) {
  stopping_.store(true, std::memory_order_release);
}

}  // namespace tritonx
