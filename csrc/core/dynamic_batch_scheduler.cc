#include "scheduler.h"

#include <algorithm>
#include <chrono>

#include "batch_io.h"
#include "logging.h"

namespace tritonx {
namespace {

// The scheduler whose worker loop runs on this thread, if any.
thread_local const Scheduler* current_worker_of = nullptr;

std::chrono::steady_clock::time_point FromNs(uint64_t ns) {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}

Shape ResolveOutputShape(const TensorSpec& spec, const Shape& produced, bool batched) {
  // Output reshape: the backend produced `reshape`, the client sees `dims`.
  int64_t batch = batched && !produced.empty() ? produced[0] : 0;
  int64_t elements = ElementCount(produced);
  int64_t per_item = batched ? (batch == 0 ? 0 : elements / batch) : elements;
  Shape out = spec.dims;
  int64_t known = 1;
  int wildcard = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      wildcard = static_cast<int>(i);
    } else {
      known *= out[i];
    }
  }
  if (wildcard >= 0) out[wildcard] = known == 0 ? 0 : per_item / known;
  if (batched) out.insert(out.begin(), batch);
  return out;
}

}  // namespace

Scheduler::Scheduler(const ModelSpec& spec, const SchedulerConfig& config,
                     std::vector<std::shared_ptr<Executor>> instances,
                     std::shared_ptr<ModelStats> stats,
                     std::shared_ptr<TensorArena> arena)
    : spec_(spec),
      config_(config),
      instances_(std::move(instances)),
      stats_(std::move(stats)),
      arena_(std::move(arena)),
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
  const size_t count = instances_.size();
  waiting_.assign(count, 0);
  claimed_.assign(count, 0);
  recent_exec_ns_ = std::make_unique<std::atomic<uint64_t>[]>(count);
  exec_samples_ = std::make_unique<std::atomic<uint32_t>[]>(count);
  for (size_t i = 0; i < count; ++i) {
    recent_exec_ns_[i] = 0;
    exec_samples_[i] = 0;
  }
  // Inline dispatch never delays batching: only when a batch would be sent at once.
  inline_possible_ = !config_.dynamic_batching || config_.max_queue_delay_us == 0;
  running_workers_ = static_cast<int>(instances_.size());
  for (size_t i = 0; i < instances_.size(); ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(static_cast<int>(i)); });
  }
  if (has_timeouts_) sweeper_ = std::thread([this] { SweeperLoop(); });
}

Scheduler::~Scheduler() {
  Stop();
  // A worker that ran Stop() itself was detached rather than joined: wait until it
  // has left WorkerLoop (it signals under mu_ and touches nothing of ours after).
  std::unique_lock<std::mutex> lock(mu_);
  exit_cv_.wait(lock, [this] { return running_workers_ == 0; });
}

bool Scheduler::OnWorkerThread() const { return current_worker_of == this; }

Status Scheduler::Enqueue(const RequestPtr& request, bool caller_waits) {
  const uint64_t now = NowNs();
  request->enqueue_ns = now;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) {
      return Status(StatusCode::kUnavailable,
                    "model '" + spec_.name + "' is unloading, request rejected");
    }
    const int inline_instance =
        caller_waits && queue_.empty() ? ClaimInlineInstance() : -1;
    if (inline_instance >= 0) {
      lock.unlock();
      RunInline(inline_instance, request);
      return Status::Ok();
    }
    Status status = queue_.Push(request, now);
    if (!status.ok()) {
      stats_->RecordFailure(FailureReason::kRejected, 0);
      return status;
    }
  }
  work_cv_.notify_one();
  if (request->deadline_ns != 0) sweep_cv_.notify_one();
  return Status::Ok();
}

namespace {
// A model whose executions take longer than this runs on its workers only: a long
// execution gains nothing from skipping the worker wake-up.
constexpr uint64_t kInlineMaxExecNs = 200'000;
// Executions measured before an instance may run inline.
constexpr uint32_t kInlineMinSamples = 8;
}  // namespace

int Scheduler::ClaimInlineInstance() {
  if (!inline_possible_) return -1;
  for (size_t i = 0; i < instances_.size(); ++i) {
    if (!waiting_[i] || claimed_[i] || !instances_[i]->AllowsInline()) continue;
    if (exec_samples_[i].load(std::memory_order_relaxed) < kInlineMinSamples ||
        recent_exec_ns_[i].load(std::memory_order_relaxed) > kInlineMaxExecNs) {
      continue;
    }
    claimed_[i] = 1;
    ++inline_active_;
    return static_cast<int>(i);
  }
  return -1;
}

void Scheduler::RunInline(int instance_index, const RequestPtr& request) {
  Batch batch;
  batch.instance_index = instance_index;
  batch.requests.push_back(request);
  batch.total_batch_size = request->batch_size;
  uint64_t sequence;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sequence = next_sequence_++;
  }
  RunBatch(*instances_[instance_index], batch, sequence);
  {
    std::lock_guard<std::mutex> lock(mu_);
    claimed_[instance_index] = 0;
    --inline_active_;
  }
  // Requests may have queued behind the claim, and Stop may be waiting for it.
  work_cv_.notify_all();
}

bool Scheduler::Cancel(const RequestPtr& request) {
  request->MarkCancelled();
  bool removed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    removed = queue_.Remove(request->uid);
  }
  if (removed) {
    stats_->RecordFailure(FailureReason::kCanceled, NowNs() - request->enqueue_ns);
    request->RespondError(Status(StatusCode::kCancelled, "request cancelled"));
  }
  return removed;
}

size_t Scheduler::PendingCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void Scheduler::Stop(bool drain) {
  std::lock_guard<std::mutex> stop_lock(stop_mu_);
  std::vector<RequestPtr> abandoned;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!drain) abandoned = queue_.DrainAll();
    if (stopping_ && workers_.empty() && abandoned.empty()) return;
    stopping_ = true;
  }
  FailRequests(abandoned,
               Status(StatusCode::kUnavailable,
                      "model '" + spec_.name + "' is unloading, request abandoned"),
               FailureReason::kOther);
  {
    // Requests running inline on callers' threads finish before the workers go.
    std::unique_lock<std::mutex> lock(mu_);
    work_cv_.wait(lock, [this] { return inline_active_ == 0; });
  }
  work_cv_.notify_all();
  sweep_cv_.notify_all();
  for (auto& worker : workers_) {
    // The last reference to a model can be dropped by one of its own workers (a
    // response callback); that worker cannot join itself, it exits on its own.
    if (worker.get_id() == std::this_thread::get_id()) {
      worker.detach();
    } else if (worker.joinable()) {
      worker.join();
    }
  }
  workers_.clear();
  if (sweeper_.joinable()) sweeper_.join();
  // With no instances nothing drained the queue: fail what is left.
  std::vector<RequestPtr> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left = queue_.DrainAll();
  }
  FailRequests(
      left, Status(StatusCode::kUnavailable, "model '" + spec_.name + "' is unloading"),
      FailureReason::kOther);
}

void Scheduler::FailRequests(std::vector<RequestPtr>& requests, const Status& status,
                             FailureReason reason) {
  const uint64_t now = NowNs();
  for (auto& request : requests) {
    stats_->RecordFailure(reason, now - request->enqueue_ns);
    request->RespondError(status);
  }
  requests.clear();
}

bool Scheduler::TakeBatch(uint64_t now_ns, Batch* batch, uint64_t* wake_ns) {
  *wake_ns = 0;
  if (queue_.empty()) return false;

  const bool batching = config_.dynamic_batching && spec_.max_batch_size > 0;
  if (!batching) {
    batch->requests = queue_.PopFront(1);
    batch->total_batch_size = batch->requests.front()->batch_size;
    return true;
  }

  // Walk the queue: the batch is the longest prefix of shape-compatible requests whose
  // batch sizes fit; remember the longest prefix that lands on a preferred size.
  const int64_t max_batch = spec_.max_batch_size;
  const std::string* key = nullptr;
  int64_t total = 0;
  size_t count = 0;
  size_t preferred_count = 0;
  int64_t preferred_total = 0;
  bool blocked = false;
  uint64_t oldest_ns = 0;
  queue_.ForEach([&](const RequestPtr& request) {
    if (key == nullptr) key = &request->shape_key;
    if (request->shape_key != *key || total + request->batch_size > max_batch) {
      blocked = true;
      return false;
    }
    total += request->batch_size;
    ++count;
    if (oldest_ns == 0 || request->enqueue_ns < oldest_ns)
      oldest_ns = request->enqueue_ns;
    if (std::binary_search(preferred_.begin(), preferred_.end(),
                           static_cast<int32_t>(total))) {
      preferred_count = count;
      preferred_total = total;
    }
    return true;
  });
  if (count == 0) {
    // The first request alone exceeds max_batch_size; validation prevents this, but
    // never leave it stuck.
    count = 1;
  }

  const bool full = blocked || total >= max_batch;
  const bool at_largest_preferred =
      !preferred_.empty() && preferred_total == preferred_.back();
  const uint64_t delay_ns = config_.max_queue_delay_us * 1000;
  const bool waited_enough = delay_ns == 0 || now_ns >= oldest_ns + delay_ns;
  if (!(full || at_largest_preferred || waited_enough || stopping_)) {
    *wake_ns = oldest_ns + delay_ns;
    return false;
  }
  const size_t take = preferred_count > 0 ? preferred_count : count;
  batch->requests = queue_.PopFront(take);
  batch->total_batch_size = 0;
  for (const auto& request : batch->requests) {
    batch->total_batch_size += request->batch_size;
  }
  return true;
}

void Scheduler::WorkerLoop(int instance_index) {
  current_worker_of = this;
  Executor& executor = *instances_[instance_index];
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
        if (TakeBatch(now, &batch, &wake_ns)) break;
        if (stopping_ && queue_.empty()) {
          // Signalled under mu_: ~Scheduler cannot proceed before this thread leaves.
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
        sequence = next_sequence_++;
        // Another idle worker may be able to take what is left.
        if (!queue_.empty()) work_cv_.notify_one();
      }
    }
    if (!expired.empty()) {
      FailRequests(expired, Status(StatusCode::kUnavailable, "Request timeout expired"),
                   FailureReason::kRejected);
    }
    if (batch.requests.empty()) continue;

    RunBatch(executor, batch, sequence);
  }
}

void Scheduler::SweeperLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    std::vector<RequestPtr> expired;
    queue_.SweepExpired(NowNs(), &expired);
    if (!expired.empty()) {
      lock.unlock();
      FailRequests(expired, Status(StatusCode::kUnavailable, "Request timeout expired"),
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

void Scheduler::RunBatch(Executor& executor, Batch& batch, uint64_t sequence) {
  const uint64_t start = NowNs();
  for (auto& request : batch.requests) request->dispatch_ns = start;

  Status status;
  if (executor.WantsGatheredInputs()) status = GatherInputs(spec_, *arena_, &batch);
  const uint64_t gathered = NowNs();
  bool finished = false;
  batch.finish = [&] {
    if (finished) return;
    finished = true;
    FinishBatch(batch, status, start, gathered, sequence);
  };
  if (status.ok()) executor.Execute(batch);
  batch.finish();  // a no-op when the executor already finished the batch
  batch.finish = nullptr;
  // Smoothed execution time per instance: decides whether inline dispatch is cheap.
  const uint64_t took = NowNs() - start;
  const int i = batch.instance_index;
  const uint64_t before = recent_exec_ns_[i].load(std::memory_order_relaxed);
  recent_exec_ns_[i].store(before == 0 ? took : (before * 7 + took) / 8,
                           std::memory_order_relaxed);
  exec_samples_[i].fetch_add(1, std::memory_order_relaxed);
}

void Scheduler::FinishBatch(Batch& batch, Status status, uint64_t start,
                            uint64_t gathered, uint64_t sequence) {
  if (status.ok()) status = batch.batch_status;
  uint64_t end = NowNs();
  if (status.ok() && !batch.gathered_outputs.empty()) {
    status = ScatterOutputs(spec_, &batch);
    end = NowNs();
  }

  // Split the compute time into Triton's three stages from what the executor marked.
  uint64_t input_end =
      batch.compute_input_end_ns ? batch.compute_input_end_ns : gathered;
  uint64_t infer_end = batch.compute_infer_end_ns ? batch.compute_infer_end_ns : end;
  input_end = std::clamp(input_end, start, end);
  infer_end = std::clamp(infer_end, input_end, end);
  const uint64_t input_ns = input_end - start;
  const uint64_t infer_ns = infer_end - input_end;
  const uint64_t output_ns = end - infer_end;
  stats_->RecordExecution(static_cast<uint64_t>(batch.total_batch_size), input_ns,
                          infer_ns, output_ns, status.ok());

  batch.responses.resize(batch.requests.size());
  std::vector<DeliveryItem> items;
  items.reserve(batch.requests.size());
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    InferenceRequest& request = *batch.requests[i];
    auto& response = batch.responses[i];
    if (!status.ok()) {
      response = std::make_unique<InferenceResponse>();
      response->status = status;
    } else if (!response) {
      response = std::make_unique<InferenceResponse>();
      response->status = Status(StatusCode::kInternal,
                                "backend returned no response for request '" +
                                    request.id + "' of model '" + spec_.name + "'");
    }
    // Triton's accounting: a failed execution fails each of its requests (BACKEND);
    // after a successful one every request counts as a success, including those the
    // model answered with an error response.
    if (status.ok()) {
      stats_->RecordSuccess(end - request.enqueue_ns, start - request.enqueue_ns,
                            input_ns, infer_ns, output_ns);
    } else {
      stats_->RecordFailure(FailureReason::kBackend, end - request.enqueue_ns);
    }
    if (response->status.ok()) {
      FinishResponse(request, response.get());
    } else {
      response->outputs.clear();
    }
    items.push_back({std::move(batch.requests[i]), std::move(response)});
  }
  Deliver(sequence, std::move(items));
}

void Scheduler::FinishResponse(const InferenceRequest& request,
                               InferenceResponse* response) {
  // Keep only outputs the model declares, in the order the client asked for them
  // (all of them in config order when it asked for none), with output reshape undone.
  std::vector<Tensor> produced = std::move(response->outputs);
  std::vector<bool> taken(produced.size(), false);
  std::vector<Tensor> kept;
  auto take = [&](const TensorSpec& output_spec) {
    for (size_t i = 0; i < produced.size(); ++i) {
      if (taken[i] || produced[i].name != output_spec.name) continue;
      Tensor& tensor = produced[i];
      if (output_spec.has_reshape) {
        tensor.shape =
            ResolveOutputShape(output_spec, tensor.shape, spec_.max_batch_size > 0);
      }
      taken[i] = true;
      kept.push_back(std::move(tensor));
      return;
    }
  };
  if (request.requested_outputs.empty()) {
    for (const auto& output_spec : spec_.outputs) take(output_spec);
  } else {
    for (const auto& name : request.requested_outputs) {
      if (const TensorSpec* output_spec = spec_.FindOutput(name)) take(*output_spec);
    }
  }
  response->outputs = std::move(kept);
}

void Scheduler::Deliver(uint64_t sequence, std::vector<DeliveryItem> items) {
  if (!config_.preserve_ordering) {
    for (auto& item : items) item.request->Respond(std::move(item.response));
    return;
  }
  // Responses leave in dispatch order. One thread at a time delivers whatever is next
  // in line; callbacks run outside the lock, because a callback may need a lock (the
  // GIL) that another worker holds while it waits to hand in its own batch.
  std::unique_lock<std::mutex> lock(delivery_mu_);
  held_.emplace(sequence, std::move(items));
  if (delivering_) return;  // the delivering thread picks this batch up
  delivering_ = true;
  while (!held_.empty() && held_.begin()->first == next_delivery_) {
    std::vector<DeliveryItem> ready = std::move(held_.begin()->second);
    held_.erase(held_.begin());
    ++next_delivery_;
    lock.unlock();
    for (auto& item : ready) item.request->Respond(std::move(item.response));
    lock.lock();
  }
  delivering_ = false;
}

}  // namespace tritonx
