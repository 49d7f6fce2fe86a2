// InstanceTable: the instances of a scheduler that runs its own (the dynamic and the
// sequence batchers), by number, and their worker threads: the bookkeeping of
// Triton's in-place instance updates (Scheduler::UpdateInstances / WaitRetired) that
// both share. Numbers are never reused and entries never removed: a worker holds its
// BatchRunner::Instance for its whole life while the table grows.
//
// Thread safety: none of its own; the owning scheduler guards every call with its
// lock (the threads TakeLeftWorkers returns are joined outside it). Ownership: holds
// the instances and the worker threads until the scheduler joins them.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "batch_runner.h"
#include "status.h"

namespace tritonx {

class InstanceTable {
 public:
  size_t size() const { return instances_.size(); }
  const std::shared_ptr<BatchRunner::Instance>& instance(int index) const {
    return instances_[index];
  }
  // A number that names an instance not retired (ExecuteOn's check).
  bool Serving(int index) const {
    return index >= 0 && index < static_cast<int>(size()) && !retired_[index];
  }
  bool retired(int index) const { return retired_[index] != 0; }
  // Held: added by an update but kept from the model's queue (it runs only what
  // ExecuteOn hands it: warmup) until released.
  bool held(int index) const { return held_[index] != 0; }
  // Takes the instance's share of the model's work: neither retired nor held.
  bool Takes(int index) const { return !retired_[index] && !held_[index]; }
  std::vector<std::thread>& workers() { return workers_; }

  // Numbers `executor` as the next instance and starts `loop(number, instance)` on
  // a worker thread of its own.
  template <typename Loop>
  void Add(std::shared_ptr<Executor> executor, Loop loop, bool held = false) {
    const int index = static_cast<int>(size());
    auto instance = std::make_shared<BatchRunner::Instance>(std::move(executor));
    instances_.push_back(instance);
    retired_.push_back(0);
    held_.push_back(held ? 1 : 0);
    left_.push_back(0);
    ++active_;
    workers_.emplace_back(
        [loop, index, instance = std::move(instance)] { loop(index, instance); });
  }

  // Checks an update of `model`'s instances: every number retired names an instance
  // not retired yet, once, and at least one instance serves afterwards.
  Status CheckUpdate(const std::string& model, const std::vector<int>& retired,
                     size_t added) const {
    std::vector<char> leaving(size(), 0);
    for (int index : retired) {
      if (!Serving(index) || leaving[index]) {
        return Status(StatusCode::kInvalidArg,
                      "model '" + model + "' has no instance " + std::to_string(index) +
                          " to retire");
      }
      leaving[index] = 1;
    }
    if (active_ - static_cast<int>(retired.size()) + static_cast<int>(added) <= 0) {
      return Status(StatusCode::kInvalidArg,
                    "model '" + model + "' would have no instance left");
    }
    return Status::Ok();
  }
  // Releases held instances to the model's queue: INVALID_ARG (nothing released)
  // unless every number names a held instance not retired.
  Status Release(const std::string& model, const std::vector<int>& indexes) {
    for (int index : indexes) {
      if (!Serving(index) || !held_[index]) {
        return Status(
            StatusCode::kInvalidArg,
            "model '" + model + "' holds no instance " + std::to_string(index));
      }
    }
    for (int index : indexes) held_[index] = 0;
    return Status::Ok();
  }
  void Retire(const std::vector<int>& retired) {
    for (int index : retired) {
      retired_[index] = 1;
      --active_;
    }
  }

  // The worker of instance `index` has left its loop (retired, or stopping).
  void MarkLeft(int index) { left_[index] = 1; }
  bool AllLeft(const std::vector<int>& indexes) const {
    for (int index : indexes) {
      if (index < 0 || index >= static_cast<int>(size()) || !left_[index]) return false;
    }
    return true;
  }
  // The threads of workers that left, for the caller to join (they are not left to
  // pile up over many updates).
  std::vector<std::thread> TakeLeftWorkers() {
    std::vector<std::thread> out;
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (left_[i] && workers_[i].joinable()) out.push_back(std::move(workers_[i]));
    }
    return out;
  }

 private:
  std::vector<std::shared_ptr<BatchRunner::Instance>> instances_;
  std::vector<std::thread> workers_;
  std::vector<char> retired_;
  std::vector<char> held_;
  std::vector<char> left_;
  int active_ = 0;  // instances not retired
};

}  // namespace tritonx
