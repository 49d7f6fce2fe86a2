#include "batch_runner.h"

#include <algorithm>

#include "batch_io.h"
#include "response_cache.h"
#include "trace.h"

namespace tritonx {
namespace {

// A model whose executions take longer than this runs on its workers only: a long
// execution gains nothing from skipping the worker wake-up.
constexpr uint64_t kInlineMaxExecNs = 200'000;
// Executions measured before an instance may run inline.
constexpr uint32_t kInlineMinSamples = 8;

}  // namespace

BatchRunner::BatchRunner(const ModelSpec& spec, bool preserve_ordering,
                         std::shared_ptr<ModelStats> stats,
                         std::shared_ptr<TensorArena> arena)
    : spec_(spec),
      preserve_ordering_(preserve_ordering),
      stats_(std::move(stats)),
      arena_(std::move(arena)) {}

bool BatchRunner::MeasuredCheap(const Instance& instance) {
  // A rate-limited instance may have to wait for other models' executions: never
  // on a caller's thread.
  if (instance.executor->rate_limit) return false;
  return instance.exec_samples.load(std::memory_order_relaxed) >= kInlineMinSamples &&
         instance.recent_exec_ns.load(std::memory_order_relaxed) <= kInlineMaxExecNs;
}

void BatchRunner::Fail(std::vector<RequestPtr>& requests, const Status& status,
                       FailureReason reason) {
  const uint64_t now = NowNs();
  for (auto& request : requests) {
    stats_->RecordFailure(reason, now - request->enqueue_ns);
    request->RespondError(status);
  }
  requests.clear();
}

void BatchRunner::Run(Batch& batch, Instance& instance, uint64_t sequence) {
  Executor& executor = *instance.executor;
  // Rate limiting: wait for the instance's resources before the clock of the
  // execution starts, so that the wait counts as queue time, as in Triton.
  RateLimiter::Slot* limit = executor.rate_limit.get();
  if (limit != nullptr && !limit->Acquire()) {
    FailAbandoned(batch.requests);
    Deliver(sequence, {});  // under preserve_ordering, later batches still leave
    return;
  }
  const uint64_t start = NowNs();
  for (auto& request : batch.requests) {
    request->dispatch_ns = start;
    // A decoupled model's senders record Triton's per-response statistics.
    if (spec_.decoupled) request->response_stats = stats_;
  }

  Status status;
  if (executor.WantsGatheredInputs()) {
    // Staging one request only pays when the arena is page-locked.
    const bool stage = executor.WantsStagedInputs() && arena_->pinned();
    status = GatherInputs(spec_, *arena_, &batch, stage);
  }
  const uint64_t gathered = NowNs();
  bool finished = false;
  batch.finish = [&] {
    if (finished) return;
    finished = true;
    FinishBatch(batch, status, start, gathered, sequence);
  };
  if (status.ok()) executor.Execute(batch);
  // The execution is over (a decoupled model may still be sending, as in Triton).
  if (limit != nullptr) limit->Release();
  batch.finish();  // a no-op when the executor already finished the batch
  batch.finish = nullptr;
  // Smoothed execution time per instance: decides whether inline dispatch is cheap.
  const uint64_t took = NowNs() - start;
  const uint64_t before = instance.recent_exec_ns.load(std::memory_order_relaxed);
  instance.recent_exec_ns.store(before == 0 ? took : (before * 7 + took) / 8,
                                std::memory_order_relaxed);
  instance.exec_samples.fetch_add(1, std::memory_order_relaxed);
}

void BatchRunner::FinishBatch(Batch& batch, Status status, uint64_t start,
                              uint64_t gathered, uint64_t sequence) {
  if (status.ok()) status = batch.batch_status;
  uint64_t end = NowNs();
  if (status.ok() && !batch.gathered_outputs.empty()) {
    status = ScatterOutputs(spec_, &batch, arena_.get());
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
  uint64_t fillers = 0;
  for (const auto& request : batch.requests) {
    if (request->null_request) fillers += static_cast<uint64_t>(request->batch_size);
    if (RequestTrace* trace = request->trace.get()) {
      trace->Record(trace_activity::kComputeStart, start);
      trace->Record(trace_activity::kComputeInputEnd, input_end);
      trace->Record(trace_activity::kComputeOutputStart, infer_end);
      trace->Record(trace_activity::kComputeEnd, end);
    }
  }
  stats_->RecordExecution(static_cast<uint64_t>(batch.total_batch_size), input_ns,
                          infer_ns, output_ns, status.ok(), fillers);

  if (spec_.decoupled) {
    // The backend answers through the requests' senders, during Execute or later.
    // Only a failed execution answers here: every request not closed yet gets its
    // error as the final response, unless the executor left that to the senders (a
    // stub process sends it on its response stream, behind the earlier responses).
    for (auto& request : batch.requests) {
      request->compute_input_ns.store(input_ns, std::memory_order_relaxed);
      request->compute_infer_ns.store(infer_ns, std::memory_order_relaxed);
      request->compute_output_ns.store(output_ns, std::memory_order_relaxed);
      if (status.ok() && Rescheduled(*request)) continue;  // runs again later
      if (status.ok()) {
        stats_->RecordSuccess(end - request->enqueue_ns, start - request->enqueue_ns,
                              input_ns, infer_ns, output_ns);
      } else {
        stats_->RecordFailure(FailureReason::kBackend, end - request->enqueue_ns);
        if (!request->answered_by_sender.load(std::memory_order_acquire))
          request->RespondError(status);
      }
    }
    return;
  }

  batch.responses.resize(batch.requests.size());
  if (status.ok() && before_deliver_) before_deliver_(batch);
  std::vector<DeliveryItem> items;
  items.reserve(batch.requests.size());
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    InferenceRequest& request = *batch.requests[i];
    auto& response = batch.responses[i];
    request.compute_input_ns.store(input_ns, std::memory_order_relaxed);
    request.compute_infer_ns.store(infer_ns, std::memory_order_relaxed);
    request.compute_output_ns.store(output_ns, std::memory_order_relaxed);
    if (status.ok() && Rescheduled(request)) continue;  // stays in batch.requests
    if (status.ok() && !request.null_request &&
        request.answered_by_sender.load(std::memory_order_acquire)) {
      // Its sender answers it (or has): a success of this execution all the same.
      stats_->RecordSuccess(end - request.enqueue_ns, start - request.enqueue_ns,
                            input_ns, infer_ns, output_ns);
      continue;
    }
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
    if (request.null_request) {
      // A sequence batcher's filler: nobody asked for it, nothing counts it.
    } else if (status.ok()) {
      stats_->RecordSuccess(end - request.enqueue_ns, start - request.enqueue_ns,
                            input_ns, infer_ns, output_ns);
      if (request.response_cache) CacheResponse(request, *response);
    } else {
      stats_->RecordFailure(FailureReason::kBackend, end - request.enqueue_ns);
    }
    items.push_back({std::move(batch.requests[i]), std::move(response)});
  }
  Deliver(sequence, std::move(items));
}

bool BatchRunner::Rescheduled(const InferenceRequest& request) const {
  return allow_reschedule_ && !request.null_request &&
         request.reschedule.load(std::memory_order_acquire) && !request.responded();
}

void BatchRunner::CacheResponse(const InferenceRequest& request,
                                const InferenceResponse& response) {
  // Every output the model produced is kept (before the request's output filter),
  // so a later hit can answer a request asking for other outputs.
  const uint64_t start = NowNs();
  if (response.status.ok()) {
    LogFailedInsert(request.cache_key,
                    request.response_cache->Insert(request.cache_key, response));
  }
  stats_->RecordCacheMiss(request.cache_lookup_ns + (NowNs() - start));
}

void BatchRunner::Deliver(uint64_t sequence, std::vector<DeliveryItem> items) {
  if (!preserve_ordering_) {
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

void BatchRunner::FailAbandoned(std::vector<RequestPtr>& requests) {
  if (requests.empty()) return;
  Fail(requests,
       Status(StatusCode::kUnavailable,
              "model '" + spec_.name + "' is unloading, request abandoned"),
       FailureReason::kOther);
}

void JoinWorkers(std::vector<std::thread>& workers) {
  for (auto& worker : workers) {
    if (worker.get_id() == std::this_thread::get_id()) {
      worker.detach();
    } else if (worker.joinable()) {
      worker.join();
    }
  }
  workers.clear();
}

}  // namespace tritonx
