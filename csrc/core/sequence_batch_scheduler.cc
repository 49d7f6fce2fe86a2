#include "sequence_batch_scheduler.h"

#include <algorithm>
#include <chrono>

namespace tritonx {
namespace {

thread_local const SequenceBatchScheduler* current_worker_of = nullptr;

std::chrono::steady_clock::time_point FromNs(uint64_t ns) {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}

// The runner's view of the model: the model's inputs plus the control and state
// inputs the batcher adds, so that gathering executors receive them too.
ModelSpec RunnerSpec(const ModelSpec& spec, const SequenceBatchingConfig& config) {
  ModelSpec out = spec;
  for (const auto& control : config.controls) {
    TensorSpec t;
    t.name = control.name;
    t.dtype = control.dtype;
    t.dims = {1};
    out.inputs.push_back(std::move(t));
  }
  for (const auto& state : config.states) {
    TensorSpec t;
    t.name = state.input_name;
    t.dtype = state.dtype;
    t.dims = state.dims;
    out.inputs.push_back(std::move(t));
  }
  return out;
}

std::string IdText(const InferenceRequest& request) {
  return request.correlation_id_str.empty() ? std::to_string(request.correlation_id)
                                            : request.correlation_id_str;
}

}  // namespace

SequenceBatchScheduler::SequenceBatchScheduler(
    const ModelSpec& spec, const SchedulerConfig& config,
    std::vector<std::shared_ptr<Executor>> instances, std::shared_ptr<ModelStats> stats,
    std::shared_ptr<TensorArena> arena)
    : InstanceScheduler(spec.name),
      config_(config.sequence),
      max_batch_size_(spec.max_batch_size),
      owned_config_(std::make_shared<const SequenceBatchingConfig>(config.sequence)),
      arena_(std::move(arena)),
      runner_(RunnerSpec(spec, config.sequence),
              config.sequence.strategy == SequenceStrategy::kOldest &&
                  config.sequence.preserve_ordering,
              std::move(stats), arena_) {
  preferred_ = config_.preferred_batch_sizes;
  std::sort(preferred_.begin(), preferred_.end());
  if (config_.strategy == SequenceStrategy::kOldest) {
    slots_per_instance_ = config_.max_candidate_sequences > 0
                              ? config_.max_candidate_sequences
                              : std::max<int32_t>(1, max_batch_size_);
  } else {
    slots_per_instance_ = std::max<int32_t>(1, max_batch_size_);
  }
  if (!config_.states.empty()) {
    runner_.SetBeforeDeliver([this](Batch& batch) { CaptureStates(batch); });
  }
  if (config_.iterative) runner_.AllowReschedule();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& executor : instances) AddInstance(std::move(executor), /*held=*/false);
  }
  reaper_ = std::thread([this] { ReaperLoop(); });
}

SequenceBatchScheduler::~SequenceBatchScheduler() {
  Stop(/*drain=*/true);
  std::unique_lock<std::mutex> lock(mu_);
  exit_cv_.wait(lock, [this] { return running_workers_ == 0; });
}

bool SequenceBatchScheduler::OnWorkerThread() const {
  return current_worker_of == this;
}

Status SequenceBatchScheduler::Enqueue(const RequestPtr& request,
                                       bool /*caller_waits*/) {
  const uint64_t now = NowNs();
  request->enqueue_ns = now;
  // Triton's sequence batcher takes one row per request (checked before the
  // correlation id).
  if (request->batch_size > 1) {
    return Status(StatusCode::kInvalidArg,
                  "inference request to model '" + Name() +
                      "' must specify batch-size 1 due to requirements of sequence "
                      "batcher");
  }
  const bool string_id = !request->correlation_id_str.empty();
  const bool anonymous = !string_id && request->correlation_id == 0;
  if (anonymous && !config_.iterative) {
    return Status(StatusCode::kInvalidArg,
                  "inference request to model '" + Name() +
                      "' must specify a non-zero or non-empty correlation ID");
  }
  if (anonymous) return EnqueueWhole(request, now);
  const std::string key = string_id ? "s" + request->correlation_id_str
                                    : "u" + std::to_string(request->correlation_id);
  const bool start = (request->flags & kFlagStart) != 0;
  const bool end = (request->flags & kFlagEnd) != 0;
  std::condition_variable* wake = nullptr;  // null: every worker
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      return Status(StatusCode::kUnavailable,
                    "model '" + Name() + "' is unloading, request rejected");
    }
    auto it = active_.find(key);
    SequencePtr seq;
    if (it == active_.end()) {
      if (!start) {
        return Status(StatusCode::kInvalidArg,
                      "inference request for sequence " + IdText(*request) +
                          " to model '" + Name() +
                          "' must specify the START flag on the first request of "
                          "the sequence");
      }
      seq = std::make_shared<Sequence>();
      seq->key = key;
      seq->id = request->correlation_id;
      seq->id_str = request->correlation_id_str;
      seq->string_id = string_id;
      active_.emplace(key, seq);
      AssignSlot(seq);
    } else {
      // START on a running sequence restarts it in place (its state is reset when
      // that request runs), as Triton does.
      seq = it->second;
    }
    seq->queue.push_back(request);
    seq->last_ns = now;
    ++pending_;
    if (seq->instance < 0 && request->timeout_us != 0) {
      // In the backlog: its requests expire at the earliest deadline given.
      const uint64_t due = now + request->timeout_us * 1000;
      if (seq->expire_ns == 0 || due < seq->expire_ns) {
        seq->expire_ns = due;
        reap_cv_.notify_all();
      }
    }
    if (end) {
      seq->ended = true;
      active_.erase(key);
    }
    // Only the worker of the slot holding the sequence can run the request; one in
    // the backlog waits for a slot (every worker is told, as before: rare).
    if (seq->instance >= 0) wake = instance_cv_[seq->instance].get();
  }
  WakeWorker(wake);
  return Status::Ok();
}

Status SequenceBatchScheduler::EnqueueWhole(const RequestPtr& request, uint64_t now) {
  std::condition_variable* wake = nullptr;  // null: every worker
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      return Status(StatusCode::kUnavailable,
                    "model '" + Name() + "' is unloading, request rejected");
    }
    // Numbered here (an id no running sequence has), starting now, never continued
    // by another request.
    while (active_.count("u" + std::to_string(next_anonymous_id_)) != 0) {
      ++next_anonymous_id_;
    }
    request->correlation_id = next_anonymous_id_++;
    request->flags |= kFlagStart;
    auto seq = std::make_shared<Sequence>();
    seq->key = "u" + std::to_string(request->correlation_id);
    seq->id = request->correlation_id;
    seq->anonymous = true;
    seq->ended = true;  // not in active_: nothing may continue it
    AssignSlot(seq);
    seq->queue.push_back(request);
    seq->last_ns = now;
    ++pending_;
    if (seq->instance >= 0) wake = instance_cv_[seq->instance].get();
  }
  WakeWorker(wake);
  return Status::Ok();
}

void SequenceBatchScheduler::AssignSlot(const SequencePtr& seq) {
  // Lowest slot first, spread over instances, so that few slots stay busy.
  for (int s = 0; s < slots_per_instance_; ++s) {
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (table_.Takes(static_cast<int>(i)) && !slots_[i][s]) {
        slots_[i][s] = seq;
        seq->instance = static_cast<int>(i);
        seq->slot = s;
        return;
      }
    }
  }
  backlog_.push_back(seq);
}

void SequenceBatchScheduler::ReleaseSlot(const SequencePtr& seq) {
  if (seq->instance < 0) return;
  const int instance = seq->instance;
  const int slot = seq->slot;
  slots_[instance][slot].reset();
  seq->instance = -1;
  seq->slot = -1;
  // A retired instance's slot stays empty: its worker leaves once all are.
  if (!backlog_.empty() && !table_.retired(instance)) {
    SequencePtr next = std::move(backlog_.front());
    backlog_.pop_front();
    slots_[instance][slot] = next;
    next->instance = instance;
    next->slot = slot;
    next->last_ns = NowNs();
  }
}

bool SequenceBatchScheduler::Cancel(const RequestPtr& request) {
  request->MarkCancelled();
  // As in Triton, cancelling a queued request cancels its sequence: every request
  // of it still queued is answered CANCELLED, and a sequence waiting in the backlog
  // is dropped (its id may start again). One that holds a slot keeps it for the
  // request it may be running (freed by END or the idle timeout, as before).
  std::vector<RequestPtr> cancelled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto take_from = [&](const SequencePtr& seq) {
      if (!seq || !cancelled.empty()) return false;
      auto& q = seq->queue;
      for (const RequestPtr& queued : q) {
        if (queued->uid != request->uid) continue;
        cancelled.assign(std::make_move_iterator(q.begin()),
                         std::make_move_iterator(q.end()));
        q.clear();
        pending_ -= cancelled.size();
        return true;
      }
      return false;
    };
    for (auto& instance : slots_) {
      for (auto& seq : instance) take_from(seq);
    }
    for (auto& instance : oldest_) {
      for (auto& slot : instance) take_from(slot.issued);
    }
    for (auto it = backlog_.begin(); cancelled.empty() && it != backlog_.end(); ++it) {
      if (!take_from(*it)) continue;
      auto found = active_.find((*it)->key);
      if (found != active_.end() && found->second == *it) active_.erase(found);
      backlog_.erase(it);
      break;
    }
  }
  // A sequence left holding a slot with nothing queued is idle from now on: the
  // reaper may be asleep with no idle slot to count (so no wake-up time) and must
  // start counting this one, or the slot stays taken until some batch runs.
  if (!cancelled.empty()) reap_cv_.notify_all();
  const uint64_t now = NowNs();
  for (const RequestPtr& queued : cancelled) {
    queued->MarkCancelled();
    runner_.stats().RecordFailure(FailureReason::kCanceled, now - queued->enqueue_ns);
    queued->RespondError(Status(StatusCode::kCancelled, "request cancelled"));
  }
  return !cancelled.empty();
}

size_t SequenceBatchScheduler::PendingCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

size_t SequenceBatchScheduler::ActiveSequences() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& instance : slots_) {
    for (const auto& seq : instance) n += seq ? 1 : 0;
  }
  return n;
}

size_t SequenceBatchScheduler::BacklogSequences() const {
  std::lock_guard<std::mutex> lock(mu_);
  return backlog_.size();
}

void SequenceBatchScheduler::Stop(bool drain) {
  std::lock_guard<std::mutex> stop_lock(stop_mu_);
  std::vector<RequestPtr> abandoned;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && table_.workers().empty()) return;
    stopping_ = true;
    abandoning_ = !drain;
    if (!drain) {
      auto take = [&](const SequencePtr& seq) {
        if (!seq) return;
        for (auto& r : seq->queue) abandoned.push_back(std::move(r));
        seq->queue.clear();
      };
      for (auto& instance : slots_) {
        for (auto& seq : instance) take(seq);
      }
      for (auto& instance : oldest_) {
        for (auto& slot : instance) take(slot.issued);
      }
      for (auto& seq : backlog_) take(seq);
      pending_ = 0;
    }
  }
  runner_.FailAbandoned(abandoned);
  WakeWorkers();
  reap_cv_.notify_all();
  JoinWorkers(table_.workers());
  if (reaper_.joinable()) reaper_.join();
  std::vector<RequestPtr> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& seq : backlog_) {
      for (auto& r : seq->queue) left.push_back(std::move(r));
      seq->queue.clear();
    }
    backlog_.clear();
    auto take = [&](SequencePtr& seq) {
      if (!seq) return;
      for (auto& r : seq->queue) left.push_back(std::move(r));
      seq->queue.clear();
      seq.reset();
    };
    for (auto& instance : slots_) {
      for (auto& seq : instance) take(seq);
    }
    for (auto& instance : oldest_) {
      for (auto& slot : instance) take(slot.issued);
    }
    active_.clear();
    pending_ = 0;
  }
  runner_.Fail(left,
               Status(StatusCode::kUnavailable, "model '" + Name() + "' is unloading"),
               FailureReason::kOther);
}

void SequenceBatchScheduler::WorkerLoop(
    int instance, const std::shared_ptr<BatchRunner::Instance>& runs_on) {
  current_worker_of = this;
  std::vector<SequencePtr>* running;
  std::condition_variable* work_ready;  // this worker's own condition
  {
    std::lock_guard<std::mutex> lock(mu_);
    running = running_[instance].get();
    work_ready = instance_cv_[instance].get();
  }
  while (true) {
    Batch batch;
    batch.instance_index = instance;
    std::vector<SequencePtr> seqs;
    std::vector<bool> closes;
    std::vector<RequestPtr> abandoned;  // rescheduled during a stop without drain
    std::vector<RequestPtr> cancelled;  // rescheduled after their client cancelled
    uint64_t sequence_no = 0;
    bool directed = false;  // an ExecuteOn batch: no sequence, no slot
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (true) {
        auto& handed = directed_[instance];
        if (!handed.empty()) {
          batch.requests = std::move(handed.front());
          handed.pop_front();
          batch.total_batch_size = 0;
          for (const auto& request : batch.requests) {
            batch.total_batch_size += request->batch_size;
          }
          directed = true;
          break;
        }
        const uint64_t now = NowNs();
        uint64_t wake_ns = 0;
        const bool taken = config_.strategy == SequenceStrategy::kOldest
                               ? TakeOldest(instance, now, &batch, &seqs, &wake_ns)
                               : TakeDirect(instance, now, &batch, &seqs, &wake_ns);
        if (taken) break;
        if (RetiredAndDone(instance)) {
          // Its last sequence ended: the instance may be finalized, and gives its
          // rate limiter resources back for good.
          runs_on->executor->rate_limit.reset();
          table_.MarkLeft(instance);
          --running_workers_;
          exit_cv_.notify_all();
          current_worker_of = nullptr;
          return;
        }
        if (stopping_) {
          // Draining: a sequence that has nothing queued gives its slot to the
          // backlog now instead of waiting out its idle time.
          for (auto& seq : slots_[instance]) {
            if (seq && seq->queue.empty() && !seq->executing) {
              if (!seq->ended) active_.erase(seq->key);
              SequencePtr held = seq;
              ReleaseSlot(held);
            }
          }
          if (HasQueuedWork(instance)) continue;
          if (pending_ == 0 || backlog_.empty()) {
            table_.MarkLeft(instance);
            --running_workers_;
            exit_cv_.notify_all();
            WakeWorkersLocked();
            current_worker_of = nullptr;
            return;
          }
        }
        if (wake_ns != 0) {
          work_ready->wait_until(lock, FromNs(wake_ns));
        } else {
          work_ready->wait(lock);
        }
      }
      closes.assign(seqs.size(), false);
      for (size_t i = 0; i < seqs.size(); ++i) {
        if (!seqs[i]) continue;
        seqs[i]->executing = true;
        --pending_;
        closes[i] = seqs[i]->anonymous || (batch.requests[i]->flags & kFlagEnd) != 0;
        // The END request is on its way: the slot goes to the next sequence now
        // (iterative: once it is answered, since it may run again).
        if (closes[i] && !config_.iterative) ReleaseSlot(seqs[i]);
      }
      sequence_no = runner_.NextSequence();
    }
    if (directed) {
      // Runs as handed over: no controls, no states, and (seqs empty) the state
      // capture finds no sequence to update.
      runner_.Run(batch, *runs_on, sequence_no);
      WakeWorkers();
      continue;
    }
    PrepareBatch(batch, seqs);
    *running = seqs;
    runner_.Run(batch, *runs_on, sequence_no);
    running->clear();
    bool wake_all = false;
    bool wake_reaper = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const uint64_t now = NowNs();
      for (auto& seq : seqs) {
        if (!seq) continue;
        seq->executing = false;
        seq->last_ns = now;
      }
      // What this batch freed or queued again is this instance's (its slots, its
      // backlog hand-overs), and its worker looks again next: the others need
      // waking only while stopping, when they leave once nothing is pending.
      wake_all = stopping_;
      wake_reaper = reaper_wake_ns_ == 0 || reaper_wake_ns_ > now + IdleNs();
      if (config_.strategy == SequenceStrategy::kOldest) CompleteOldest(instance);
      if (config_.iterative) {
        AfterIteration(batch, seqs, closes, &abandoned, &cancelled);
      }
      for (auto& seq : seqs) {
        if (seq && seq->instance < 0) seq->state.clear();  // ended: its state goes
      }
    }
    runner_.FailAbandoned(abandoned);
    if (!cancelled.empty()) {
      runner_.Fail(cancelled, Status(StatusCode::kCancelled, "request cancelled"),
                   FailureReason::kCanceled);
    }
    if (wake_all) WakeWorkers();
    if (wake_reaper) reap_cv_.notify_all();
  }
}

void SequenceBatchScheduler::AfterIteration(Batch& batch,
                                            const std::vector<SequencePtr>& seqs,
                                            const std::vector<bool>& closes,
                                            std::vector<RequestPtr>* abandoned,
                                            std::vector<RequestPtr>* cancelled) {
  for (size_t i = 0; i < seqs.size(); ++i) {
    const SequencePtr& seq = seqs[i];
    if (!seq) continue;
    RequestPtr& request = batch.requests[i];  // null once answered (non-decoupled)
    if (request && request->reschedule.exchange(false) && !request->responded()) {
      if (abandoning_ || request->IsCancelled()) {
        // A stop without drain gives up what is queued: this too. A request its
        // client cancelled runs no more (the model need not check for it).
        (abandoning_ ? abandoned : cancelled)->push_back(std::move(request));
        ReleaseSlot(seq);
        continue;
      }
      // Runs again next, before any later request of its sequence; its START
      // control is false from now on and its states carry over.
      request->flags &= ~kFlagStart;
      seq->queue.push_front(std::move(request));
      ++pending_;
      continue;
    }
    if (closes[i]) ReleaseSlot(seq);
  }
}

void SequenceBatchScheduler::ReaperLoop() {
  const uint64_t idle_ns = IdleNs();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const uint64_t now = NowNs();
    uint64_t next = 0;
    bool freed = false;
    // Backlogged sequences past their requests' timeout are refused as a whole.
    std::vector<RequestPtr> expired;
    for (auto it = backlog_.begin(); it != backlog_.end();) {
      const SequencePtr& seq = *it;
      if (seq->expire_ns == 0 || seq->expire_ns > now) {
        if (seq->expire_ns != 0 && (next == 0 || seq->expire_ns < next)) {
          next = seq->expire_ns;
        }
        ++it;
        continue;
      }
      for (auto& r : seq->queue) expired.push_back(std::move(r));
      pending_ -= seq->queue.size();
      seq->queue.clear();
      auto found = active_.find(seq->key);
      if (found != active_.end() && found->second == seq) active_.erase(found);
      it = backlog_.erase(it);
    }
    if (!expired.empty()) {
      lock.unlock();
      runner_.Fail(expired,
                   Status(StatusCode::kUnavailable,
                          "timeout of the corresponding sequence has been expired"),
                   FailureReason::kRejected);
      expired.clear();
      lock.lock();
      continue;
    }
    for (auto& instance : slots_) {
      for (auto& slot : instance) {
        if (!slot || !slot->queue.empty() || slot->executing) continue;
        const uint64_t due = slot->last_ns + idle_ns;
        if (due <= now) {
          // Idle too long: the sequence ends and its slot is free; a later request
          // of it without START is then an unknown sequence.
          SequencePtr seq = slot;
          if (!seq->ended) {
            auto it = active_.find(seq->key);
            if (it != active_.end() && it->second == seq) active_.erase(it);
          }
          ReleaseSlot(seq);
          seq->state.clear();
          freed = true;
        } else if (next == 0 || due < next) {
          next = due;
        }
      }
    }
    if (freed) {
      // A freed slot may have gone to a backlogged sequence, on any instance.
      WakeWorkersLocked();
      continue;
    }
    reaper_wake_ns_ = next;
    if (next == 0) {
      reap_cv_.wait(lock);
    } else {
      reap_cv_.wait_until(lock, FromNs(next));
    }
  }
}

}  // namespace tritonx
