#include "instance_scheduler.h"

#include <thread>
#include <utility>

namespace tritonx {

Status InstanceScheduler::UpdateInstances(std::vector<std::shared_ptr<Executor>> added,
                                          const std::vector<int>& retired,
                                          bool hold_added) {
  std::lock_guard<std::mutex> stop_lock(stop_mu_);
  std::vector<std::thread> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      return Status(StatusCode::kUnavailable,
                    "model '" + model_name_ + "' is unloading");
    }
    Status status = table_.CheckUpdate(model_name_, retired, added.size());
    if (!status.ok()) return status;
    table_.Retire(retired);
    for (auto& executor : added) AddInstance(std::move(executor), hold_added);
    InstancesChanged();
    finished = table_.TakeLeftWorkers();
  }
  // The retired workers wake to leave; added ones look for work.
  WakeWorkers();
  for (auto& worker : finished) worker.join();
  return Status::Ok();
}

Status InstanceScheduler::ReleaseInstances(const std::vector<int>& instances) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Status status = table_.Release(model_name_, instances);
    if (!status.ok()) return status;
    InstancesChanged();
  }
  WakeWorkers();
  return Status::Ok();
}

bool InstanceScheduler::WaitRetired(const std::vector<int>& instances,
                                    std::chrono::nanoseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return exit_cv_.wait_for(lock, timeout, [&] { return table_.AllLeft(instances); });
}

void InstanceScheduler::StartWorker(std::shared_ptr<Executor> executor, bool held) {
  directed_.emplace_back();
  ++running_workers_;
  table_.Add(
      std::move(executor),
      [this](int index, const std::shared_ptr<BatchRunner::Instance>& runs_on) {
        WorkerLoop(index, runs_on);
      },
      held);
}

Status InstanceScheduler::ExecuteOn(int instance, std::vector<RequestPtr> requests) {
  const uint64_t now = NowNs();
  for (const auto& request : requests) request->enqueue_ns = now;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!table_.Serving(instance)) {
      return Status(
          StatusCode::kInvalidArg,
          "model '" + model_name_ + "' has no instance " + std::to_string(instance));
    }
    if (stopping_) {
      return Status(StatusCode::kUnavailable,
                    "model '" + model_name_ + "' is unloading, request rejected");
    }
    directed_[instance].push_back(std::move(requests));
  }
  // Wake every worker: the addressed one finds its batch, the others wait again.
  WakeWorkers();
  return Status::Ok();
}

}  // namespace tritonx
