// InstanceScheduler: a Scheduler that runs instances of its own (the dynamic and the
// sequence batchers). It holds what those share — the lock, the worker condition
// variables, the instance table — and implements Triton's in-place instance updates
// (UpdateInstances / ReleaseInstances / WaitRetired) and warmup's ExecuteOn once; a
// subclass says how an instance joins it (AddInstance, which ends in StartWorker),
// what its worker runs (WorkerLoop, which runs directed_ batches first) and what to
// do when the set changes (InstancesChanged).
//
// Thread safety: the Scheduler contract; every protected member is guarded by mu_
// (the table's worker threads also by stop_mu_, which serializes updates and Stop).
// Ownership: see InstanceTable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "instance_table.h"
#include "scheduler.h"

namespace tritonx {

class InstanceScheduler : public Scheduler {
 public:
  Status UpdateInstances(std::vector<std::shared_ptr<Executor>> added,
                         const std::vector<int>& retired, bool hold_added) final;
  Status ReleaseInstances(const std::vector<int>& instances) final;
  bool WaitRetired(const std::vector<int>& instances,
                   std::chrono::nanoseconds timeout) final;
  // Triton's warmup: `requests` run as one batch on `instance`'s worker, before
  // anything it would take next (past the batching rules; under the sequence
  // batcher outside every sequence, with no slot touched).
  Status ExecuteOn(int instance, std::vector<RequestPtr> requests) final;

 protected:
  explicit InstanceScheduler(std::string model_name)
      : model_name_(std::move(model_name)) {}

  // With mu_ held: numbers `executor` as the next instance and starts its worker
  // (held: it runs only what ExecuteOn hands it until released).
  virtual void AddInstance(std::shared_ptr<Executor> executor, bool held) = 0;
  // With mu_ held: the end of AddInstance, once the subclass' per-instance state
  // exists: the instance's directed_ queue, its table entry and its worker.
  void StartWorker(std::shared_ptr<Executor> executor, bool held);
  // The worker of instance `instance` (a thread the table owns), until it leaves.
  virtual void WorkerLoop(int instance,
                          const std::shared_ptr<BatchRunner::Instance>& runs_on) = 0;
  // With mu_ held, after instances were added, released or retired.
  virtual void InstancesChanged() {}
  // Without mu_: every worker looks for work again (the table or the directed
  // batches changed). The sequence batcher's workers wait on conditions of their own.
  virtual void WakeWorkers() { work_cv_.notify_all(); }

  const std::string model_name_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // workers wait here for work (see WakeWorkers)
  bool stopping_ = false;
  InstanceTable table_;
  // Batches handed to instance i by ExecuteOn, run by its worker before its own.
  std::vector<std::deque<std::vector<RequestPtr>>> directed_;
  std::mutex stop_mu_;
  // Workers still inside their loop; a worker that ran Stop() itself is detached,
  // and the destructor waits for it here (as WaitRetired waits for retired ones).
  int running_workers_ = 0;
  std::condition_variable exit_cv_;
};

}  // namespace tritonx
