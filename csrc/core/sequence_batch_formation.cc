// How the sequence batcher forms a batch for one instance from the sequences in its
// slots: the direct strategy (a request from each ready slot, a null request in the
// others) and the oldest strategy (a dynamic batcher over the requests the slots
// issue one at a time, with Triton's preferred-size rule). Split from
// sequence_batch_scheduler.cc, which keeps admission, slots, the workers and the
// reaper; both run under the scheduler's lock.
#include <algorithm>

#include "preferred_cut.h"
#include "sequence_batch_scheduler.h"

namespace tritonx {

bool SequenceBatchScheduler::HasQueuedWork(int instance) const {
  for (const auto& seq : slots_[instance]) {
    if (seq && !seq->queue.empty()) return true;
  }
  for (const OldestSlot& slot : oldest_[instance]) {
    if (slot.issued && !slot.issued->queue.empty()) return true;
  }
  return false;
}

void SequenceBatchScheduler::IssueOldest(int instance, uint64_t now) {
  auto& slots = oldest_[instance];
  for (int s = 0; s < slots_per_instance_; ++s) {
    OldestSlot& slot = slots[s];
    if (slot.issued && slot.issued->queue.empty()) {
      // Its issued request was cancelled: nothing of it is in flight.
      slot.issued.reset();
      slot.busy = false;
    }
    if (slot.busy) continue;
    SequencePtr seq = slots_[instance][s];
    if (!seq || seq->queue.empty() || seq->executing) continue;
    slot.issued = seq;
    slot.issued_ns = now;
    slot.busy = true;
    // Triton's oldest batcher frees the slot of a sequence as it issues its END; the
    // next sequence in the slot waits for this request to complete. (Iterative
    // sequences keep theirs until their last request is answered.)
    if (!config_.iterative && (seq->queue.front()->flags & kFlagEnd) != 0) {
      ReleaseSlot(seq);
    }
  }
}

void SequenceBatchScheduler::CompleteOldest(int instance) {
  for (int s : oldest_running_[instance]) oldest_[instance][s].busy = false;
  oldest_running_[instance].clear();
}

bool SequenceBatchScheduler::HoldsOldest(int instance) const {
  for (const OldestSlot& slot : oldest_[instance]) {
    if (slot.busy) return true;
  }
  return false;
}

bool SequenceBatchScheduler::TakeDirect(int instance, uint64_t now, Batch* batch,
                                        std::vector<SequencePtr>* seqs,
                                        uint64_t* wake_ns) {
  *wake_ns = 0;
  const auto& slots = slots_[instance];
  int ready = 0;
  int highest = -1;
  uint64_t oldest_ns = 0;
  for (int s = 0; s < slots_per_instance_; ++s) {
    const SequencePtr& seq = slots[s];
    if (!seq || seq->queue.empty() || seq->executing) continue;
    ++ready;
    highest = s;
    const uint64_t t = seq->queue.front()->enqueue_ns;
    if (oldest_ns == 0 || t < oldest_ns) oldest_ns = t;
  }
  if (ready == 0) return false;
  const uint64_t delay_ns = config_.max_queue_delay_us * 1000;
  const bool utilized =
      ready >= slots_per_instance_ || static_cast<float>(ready) / slots_per_instance_ >=
                                          config_.minimum_slot_utilization;
  // Without a delay a batch goes at once; with one it waits for the utilization.
  if (!stopping_ && delay_ns > 0 && !utilized && now < oldest_ns + delay_ns) {
    *wake_ns = oldest_ns + delay_ns;
    return false;
  }
  const std::string* shape_key = nullptr;  // the batch's, from its first request
  for (int s = 0; s <= highest; ++s) {
    const SequencePtr& seq = slots[s];
    // As Triton: a request whose shapes differ from the batch's first one (inputs
    // that may not be ragged) waits for a later batch; its slot is null in this one.
    if (!seq || seq->queue.empty() || seq->executing ||
        (shape_key != nullptr && seq->queue.front()->shape_key != *shape_key)) {
      // An empty slot: a null request takes its place (filled in PrepareBatch).
      batch->requests.push_back(nullptr);
      seqs->push_back(nullptr);
      continue;
    }
    if (shape_key == nullptr) shape_key = &seq->queue.front()->shape_key;
    batch->requests.push_back(std::move(seq->queue.front()));
    seq->queue.pop_front();
    seqs->push_back(seq);
  }
  return true;
}

bool SequenceBatchScheduler::TakeOldest(int instance, uint64_t now, Batch* batch,
                                        std::vector<SequencePtr>* seqs,
                                        uint64_t* wake_ns) {
  *wake_ns = 0;
  IssueOldest(instance, now);
  std::vector<int> ready;  // slots with an issued request, oldest issue first
  auto& slots = oldest_[instance];
  for (int s = 0; s < slots_per_instance_; ++s) {
    if (slots[s].issued) ready.push_back(s);
  }
  if (ready.empty()) return false;
  std::stable_sort(ready.begin(), ready.end(), [&](int a, int b) {
    return slots[a].issued_ns < slots[b].issued_ns;
  });
  // Triton's oldest strategy is a dynamic batcher over the issued requests: the same
  // preferred-size rule (PreferredCut) over the longest shape-compatible run of them
  // that fits max_batch_size, oldest first.
  const std::string& key = slots[ready.front()].issued->queue.front()->shape_key;
  PreferredCut cut(std::max<int32_t>(1, max_batch_size_), preferred_);
  bool blocked = false;
  for (int s : ready) {
    const RequestPtr& r = slots[s].issued->queue.front();
    cut.Consider(r->batch_size);
    if ((max_batch_size_ == 0 && cut.count() == 1) || r->shape_key != key ||
        !cut.Fits(r->batch_size)) {
      blocked = true;
      break;
    }
    cut.Add(r->batch_size);
  }
  const uint64_t oldest_ns = slots[ready.front()].issued_ns;
  const uint64_t delay_ns = config_.max_queue_delay_us * 1000;
  const bool delay_lapsed = delay_ns != 0 && now >= oldest_ns + delay_ns;
  const size_t take = cut.Take(blocked, delay_ns != 0, delay_lapsed, stopping_);
  if (take == 0) {
    *wake_ns = oldest_ns + delay_ns;
    return false;
  }
  for (size_t i = 0; i < take; ++i) {
    OldestSlot& slot = slots[ready[i]];
    SequencePtr seq = std::move(slot.issued);
    batch->requests.push_back(std::move(seq->queue.front()));
    seq->queue.pop_front();
    seqs->push_back(std::move(seq));
    oldest_running_[instance].push_back(ready[i]);  // busy until it completes
  }
  return true;
}

}  // namespace tritonx
