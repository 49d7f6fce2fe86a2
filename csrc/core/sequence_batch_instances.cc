// The sequence batcher's side of its instances: adding one (at construction and by
// instance updates, whose bookkeeping InstanceScheduler keeps), handing slots to the
// backlog, a retired instance's end, and batches handed to one instance (warmup).
// Split from sequence_batch_scheduler.cc, which keeps admission, slots, the workers
// and the reaper.
#include <string>
#include <utility>

#include "sequence_batch_scheduler.h"

namespace tritonx {

void SequenceBatchScheduler::AddInstance(std::shared_ptr<Executor> executor,
                                         bool held) {
  slots_.emplace_back(slots_per_instance_);
  oldest_.emplace_back(
      config_.strategy == SequenceStrategy::kOldest ? slots_per_instance_ : 0);
  oldest_running_.emplace_back();
  running_.push_back(std::make_unique<std::vector<SequencePtr>>());
  instance_cv_.push_back(std::make_unique<std::condition_variable>());
  StartWorker(std::move(executor), held);
}

void SequenceBatchScheduler::WakeWorkers() {
  std::lock_guard<std::mutex> lock(mu_);
  WakeWorkersLocked();
}

void SequenceBatchScheduler::WakeWorkersLocked() {
  for (auto& cv : instance_cv_) cv->notify_all();
}

void SequenceBatchScheduler::WakeWorker(std::condition_variable* worker) {
  if (worker != nullptr) {
    worker->notify_all();
  } else {
    WakeWorkers();
  }
}

void SequenceBatchScheduler::FillFromBacklog() {
  // AssignSlot's order: lowest slot first, spread over instances.
  for (int s = 0; s < slots_per_instance_ && !backlog_.empty(); ++s) {
    for (size_t i = 0; i < slots_.size() && !backlog_.empty(); ++i) {
      if (!table_.Takes(static_cast<int>(i)) || slots_[i][s]) continue;
      SequencePtr next = std::move(backlog_.front());
      backlog_.pop_front();
      slots_[i][s] = next;
      next->instance = static_cast<int>(i);
      next->slot = s;
      next->last_ns = NowNs();
    }
  }
}

bool SequenceBatchScheduler::RetiredAndDone(int instance) const {
  if (!table_.retired(instance) || !directed_[instance].empty() ||
      HoldsOldest(instance)) {
    return false;
  }
  for (const auto& seq : slots_[instance]) {
    if (seq) return false;
  }
  return true;
}

}  // namespace tritonx
