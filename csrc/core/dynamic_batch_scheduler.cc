#include "dynamic_batch_scheduler.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "batch_strategy.h"
#include "preferred_cut.h"
#include "sequence_batch_scheduler.h"

namespace tritonx {
namespace {

// The scheduler whose worker loop runs on this thread, if any.
thread_local const DynamicBatchScheduler* current_worker_of = nullptr;

std::chrono::steady_clock::time_point FromNs(uint64_t ns) {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}

}  // namespace

std::unique_ptr<Scheduler> MakeScheduler(
    const ModelSpec& spec, const SchedulerConfig& config,
    std::vector<std::shared_ptr<Executor>> instances, std::shared_ptr<ModelStats> stats,
    std::shared_ptr<TensorArena> arena) {
  if (config.sequence.strategy != SequenceStrategy::kNone) {
    return std::make_unique<SequenceBatchScheduler>(spec, config, std::move(instances),
                                                    std::move(stats), std::move(arena));
  }
  return std::make_unique<DynamicBatchScheduler>(spec, config, std::move(instances),
                                                 std::move(stats), std::move(arena));
}

DynamicBatchScheduler::DynamicBatchScheduler(
    const ModelSpec& spec, const SchedulerConfig& config,
    std::vector<std::shared_ptr<Executor>> instances, std::shared_ptr<ModelStats> stats,
    std::shared_ptr<TensorArena> arena)
    : InstanceScheduler(spec.name),
      config_(config),
      runner_(spec, config.preserve_ordering, std::move(stats), std::move(arena)),
      queue_(config) {
  preferred_.assign(config.preferred_batch_sizes.begin(),
                    config.preferred_batch_sizes.end());
  std::sort(preferred_.begin(), preferred_.end());
  auto has_timeout = [](const QueuePolicy& p) {
    return p.default_timeout_us > 0 || p.allow_timeout_override;
  };
  has_timeouts_ = has_timeout(config.default_queue_policy);
  for (const auto& [level, policy] : config.priority_queue_policy) {
    has_timeouts_ = has_timeouts_ || has_timeout(policy);
  }
  if (config_.batch_strategy && config_.batch_strategy->enabled()) {
    strategy_ = config_.batch_strategy.get();
  }
  // Inline dispatch never delays batching: only when a batch would be sent at once,
  // and a strategy library sees every request the batcher takes.
  inline_possible_ = (!config_.dynamic_batching || config_.max_queue_delay_us == 0) &&
                     strategy_ == nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& executor : instances) AddInstance(std::move(executor), /*held=*/false);
  }
  if (has_timeouts_) sweeper_ = std::thread([this] { SweeperLoop(); });
}

void DynamicBatchScheduler::AddInstance(std::shared_ptr<Executor> executor, bool held) {
  waiting_.push_back(0);
  claimed_.push_back(0);
  StartWorker(std::move(executor), held);
}

bool DynamicBatchScheduler::RetiredAndDone(int instance_index) const {
  return table_.retired(instance_index) && !claimed_[instance_index] &&
         directed_[instance_index].empty();
}

DynamicBatchScheduler::~DynamicBatchScheduler() {
  Stop(/*drain=*/true);
  // A worker that ran Stop() itself was detached rather than joined: wait until it
  // has left WorkerLoop (it signals under mu_ and touches nothing of ours after).
  std::unique_lock<std::mutex> lock(mu_);
  exit_cv_.wait(lock, [this] { return running_workers_ == 0; });
}

bool DynamicBatchScheduler::OnWorkerThread() const { return current_worker_of == this; }

Status DynamicBatchScheduler::Enqueue(const RequestPtr& request, bool caller_waits) {
  const uint64_t now = NowNs();
  request->enqueue_ns = now;
  bool expires = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) {
      return Status(StatusCode::kUnavailable, "model '" + runner_.spec().name +
                                                  "' is unloading, request rejected");
    }
    const int inline_instance =
        caller_waits && queue_.empty() ? ClaimInlineInstance() : -1;
    if (inline_instance >= 0) {
      lock.unlock();
      RunInline(inline_instance, request);
      return Status::Ok();
    }
    // A full queue's refusal is not counted as a failure: Triton 2.51 counts it
    // neither in the statistics' fail count nor in nv_inference_request_failure.
    Status status = queue_.Push(request, now);
    if (!status.ok()) return status;
    // Read under mu_: once it is unlocked the sweeper may clear the deadline (a
    // delayed request) while this thread reads it.
    expires = request->deadline_ns != 0;
  }
  work_cv_.notify_one();
  if (expires) sweep_cv_.notify_one();
  return Status::Ok();
}

int DynamicBatchScheduler::ClaimInlineInstance() {
  if (!inline_possible_) return -1;
  for (int i = 0; i < static_cast<int>(table_.size()); ++i) {
    if (!waiting_[i] || claimed_[i] || !table_.Takes(i) ||
        !table_.instance(i)->executor->AllowsInline() ||
        !BatchRunner::MeasuredCheap(*table_.instance(i))) {
      continue;
    }
    claimed_[i] = 1;
    ++inline_active_;
    return i;
  }
  return -1;
}

void DynamicBatchScheduler::RunInline(int instance_index, const RequestPtr& request) {
  Batch batch;
  batch.instance_index = instance_index;
  batch.inline_run = true;
  batch.requests.push_back(request);
  batch.total_batch_size = request->batch_size;
  uint64_t sequence;
  std::shared_ptr<BatchRunner::Instance> instance;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sequence = runner_.NextSequence();
    instance = table_.instance(instance_index);
  }
  runner_.Run(batch, *instance, sequence);
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    claimed_[instance_index] = 0;
    --inline_active_;
    // Requests may have queued behind the claim, work may have been directed to the
    // instance, Stop may be waiting for the claim, or the worker may have woken and
    // gone back to sleep on the claim (a change it must see, notified meanwhile):
    // then the workers are woken. Otherwise the worker still sleeps in its idle
    // wait with nothing new to find, and waking it would cost a context switch (and
    // a contended lock) per inline request for nothing.
    wake = !waiting_[instance_index] || !queue_.empty() ||
           !directed_[instance_index].empty() || stopping_;
  }
  if (wake) work_cv_.notify_all();
}

bool DynamicBatchScheduler::Cancel(const RequestPtr& request) {
  request->MarkCancelled();
  bool removed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    removed = queue_.Remove(request->uid);
  }
  if (removed) {
    runner_.stats().RecordFailure(FailureReason::kCanceled,
                                  NowNs() - request->enqueue_ns);
    request->RespondError(Status(StatusCode::kCancelled, "request cancelled"));
  }
  return removed;
}

size_t DynamicBatchScheduler::PendingCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void DynamicBatchScheduler::Stop(bool drain) {
  std::lock_guard<std::mutex> stop_lock(stop_mu_);
  std::vector<RequestPtr> abandoned;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!drain) abandoned = queue_.DrainAll();
    if (stopping_ && table_.workers().empty() && abandoned.empty()) return;
    stopping_ = true;
  }
  runner_.FailAbandoned(abandoned);
  {
    // Requests running inline on callers' threads finish before the workers go.
    std::unique_lock<std::mutex> lock(mu_);
    work_cv_.wait(lock, [this] { return inline_active_ == 0; });
  }
  work_cv_.notify_all();
  sweep_cv_.notify_all();
  JoinWorkers(table_.workers());
  if (sweeper_.joinable()) sweeper_.join();
  // With no instances nothing drained the queue: fail what is left.
  std::vector<RequestPtr> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left = queue_.DrainAll();
  }
  runner_.Fail(left,
               Status(StatusCode::kUnavailable,
                      "model '" + runner_.spec().name + "' is unloading"),
               FailureReason::kOther);
}

bool DynamicBatchScheduler::TakeBatch(uint64_t now_ns, Batch* batch,
                                      uint64_t* wake_ns) {
  *wake_ns = 0;
  if (queue_.empty()) return false;

  const bool batching = config_.dynamic_batching && runner_.spec().max_batch_size > 0;
  if (!batching) {
    batch->requests = queue_.PopFront(1);
    batch->total_batch_size = batch->requests.front()->batch_size;
    return true;
  }

  // Walk the queue from its head: the batch is the longest prefix of shape-compatible
  // requests that fit max_batch_size (and that a strategy library takes); Triton's
  // preferred-size rule (PreferredCut) decides how much of it leaves, and when. Each
  // walk forms the whole batch from the queue's head, so it is one strategy batch
  // (BeginBatch .. EndBatch). The first request is taken whatever the strategy
  // says: a batch is never empty.
  PreferredCut cut(runner_.spec().max_batch_size, preferred_);
  const std::string* key = nullptr;
  bool blocked = false;
  uint64_t oldest_ns = 0;
  void* strategy_state = strategy_ != nullptr ? strategy_->BeginBatch() : nullptr;
  queue_.ForEach([&](const RequestPtr& request) {
    if (key == nullptr) key = &request->shape_key;
    cut.Consider(request->batch_size);
    if (request->shape_key != *key || !cut.Fits(request->batch_size)) {
      blocked = true;
      return false;
    }
    if (strategy_ != nullptr && !strategy_->Include(request.get(), strategy_state) &&
        cut.count() > 0) {
      blocked = true;
      return false;
    }
    cut.Add(request->batch_size);
    if (oldest_ns == 0 || request->enqueue_ns < oldest_ns)
      oldest_ns = request->enqueue_ns;
    return true;
  });
  if (strategy_ != nullptr) strategy_->EndBatch(strategy_state);
  if (oldest_ns == 0) oldest_ns = now_ns;  // the head alone exceeds max_batch_size

  const uint64_t delay_ns = config_.max_queue_delay_us * 1000;
  const bool delay_lapsed = delay_ns != 0 && now_ns >= oldest_ns + delay_ns;
  const size_t take = cut.Take(blocked, delay_ns != 0, delay_lapsed, stopping_);
  if (take == 0) {
    *wake_ns = oldest_ns + delay_ns;
    return false;
  }
  batch->requests = queue_.PopFront(take);
  batch->total_batch_size = 0;
  for (const auto& request : batch->requests) {
    batch->total_batch_size += request->batch_size;
  }
  return true;
}

void DynamicBatchScheduler::WorkerLoop(
    int instance_index, const std::shared_ptr<BatchRunner::Instance>& instance) {
  current_worker_of = this;
  while (true) {
    Batch batch;
    batch.instance_index = instance_index;
    std::vector<RequestPtr> expired;
    uint64_t sequence = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (true) {
        const uint64_t now = NowNs();
        if (has_timeouts_) queue_.SweepExpired(now, &expired);
        if (!expired.empty()) break;  // answer them outside the lock, then come back
        uint64_t wake_ns = 0;
        if (claimed_[instance_index]) {
          // The instance is running a request inline on another thread.
          work_cv_.wait(lock);
          continue;
        }
        auto& directed = directed_[instance_index];
        if (!directed.empty()) {
          batch.requests = std::move(directed.front());
          directed.pop_front();
          batch.total_batch_size = 0;
          for (const auto& request : batch.requests) {
            batch.total_batch_size += request->batch_size;
          }
          break;
        }
        const bool retired = RetiredAndDone(instance_index);
        // A held instance helps drain the queue only when the model stops.
        const bool takes = table_.Takes(instance_index) ||
                           (stopping_ && !table_.retired(instance_index));
        if (takes && TakeBatch(now, &batch, &wake_ns)) break;
        if (retired || (stopping_ && queue_.empty())) {
          // Signalled under mu_: ~Scheduler cannot proceed before this thread leaves.
          table_.MarkLeft(instance_index);
          waiting_[instance_index] = 0;
          // A retired instance gives its rate limiter resources back for good.
          if (retired) instance->executor->rate_limit.reset();
          --running_workers_;
          exit_cv_.notify_all();
          current_worker_of = nullptr;
          return;
        }
        uint64_t deadline = queue_.NextDeadline();
        if (deadline != 0 && (wake_ns == 0 || deadline < wake_ns)) wake_ns = deadline;
        if (wake_ns != 0) {
          work_cv_.wait_until(lock, FromNs(wake_ns));
        } else {
          waiting_[instance_index] = queue_.empty();
          work_cv_.wait(lock);
          waiting_[instance_index] = 0;
        }
      }
      if (!batch.requests.empty()) {
        sequence = runner_.NextSequence();
        // Another idle worker may be able to take what is left.
        if (!queue_.empty()) work_cv_.notify_one();
      }
    }
    if (!expired.empty()) {
      runner_.Fail(expired, Status(StatusCode::kUnavailable, "Request timeout expired"),
                   FailureReason::kRejected);
    }
    if (batch.requests.empty()) continue;

    runner_.Run(batch, *instance, sequence);
  }
}

void DynamicBatchScheduler::SweeperLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    std::vector<RequestPtr> expired;
    queue_.SweepExpired(NowNs(), &expired);
    if (!expired.empty()) {
      lock.unlock();
      runner_.Fail(expired, Status(StatusCode::kUnavailable, "Request timeout expired"),
                   FailureReason::kRejected);
      lock.lock();
      continue;
    }
    uint64_t deadline = queue_.NextDeadline();
    if (deadline == 0) {
      sweep_cv_.wait(lock);
    } else {
      sweep_cv_.wait_until(lock, FromNs(deadline));
    }
  }
}

}  // namespace tritonx
