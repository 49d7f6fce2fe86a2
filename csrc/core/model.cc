#include "model.h"

#include <algorithm>
#include <string>
#include <system_error>
#include <thread>

#include "ensemble_scheduler.h"
#include "inflight_limit.h"
#include "logging.h"
#include "request_parameters.h"
#include "scheduler.h"
#include "server_context.h"

namespace tritonx {

Model::Model(ModelSpec spec, SchedulerConfig config,
             std::vector<std::shared_ptr<Executor>> instances,
             const ServerContext* context)
    : spec_(std::make_shared<const ModelSpec>(std::move(spec))),
      config_(std::move(config)),
      stats_(std::make_shared<ModelStats>(
          (context ? *context : *ServerContext::Default()).latency_summaries())),
      inflight_(std::make_shared<InflightCounter>(
          (context ? *context : *ServerContext::Default()).inflight_limit())) {
  config_.max_batch_size = spec_->max_batch_size;
  const ServerContext& server = context ? *context : *ServerContext::Default();
  for (const auto& instance : instances) {
    if (instance && instance->rate_limit) rate_limits_.push_back(instance->rate_limit);
  }
  tracer_ = server.tracer();
  if (spec_->response_cache && !spec_->decoupled) {
    cache_ = server.response_cache();
  }
  if (config_.ensemble) {
    // The ensemble finds its composing models in the server's registry at request
    // time; it holds the registry weakly (the registry holds this model).
    scheduler_ = std::make_unique<EnsembleScheduler>(*spec_, *config_.ensemble, stats_,
                                                     server.registry());
  } else {
    scheduler_ =
        MakeScheduler(*spec_, config_, std::move(instances), stats_, server.arena());
  }
}

Model::~Model() {
  if (scheduler_ && scheduler_->OnWorkerThread()) {
    // The last reference was dropped on one of this model's own workers (a response
    // callback releasing it), whose stack still runs inside the scheduler. Hand the
    // scheduler to a thread of its own: it stops it, joins every worker (this one once
    // it has unwound) and frees it.
    Scheduler* scheduler = scheduler_.release();
    try {
      std::thread([scheduler] {
        scheduler->Stop(/*drain=*/true);
        delete scheduler;
      }).detach();
    } catch (const std::system_error& error) {
      // No thread can start (a pids limit, no address space). This worker cannot
      // stop a scheduler that would join it, so the scheduler is left running: its
      // workers finish what is queued, then idle until the process exits. A leak,
      // not the std::terminate a destructor's exception would be.
      Log(LogLevel::kError,
          std::string("cannot start a thread to stop the scheduler of model '") +
              spec_->name + "' (" + error.what() +
              "); its worker threads stay until the server exits");
    }
    return;
  }
  Stop();
}

Status Model::Enqueue(const RequestPtr& request, bool caller_waits) {
  Status status = Take(request, caller_waits);
  if (!status.ok()) {
    request->SetResponseCallback(nullptr);
    request->SetResponseStream(nullptr);
  }
  return status;
}

Status Model::Take(const RequestPtr& request, bool caller_waits) {
  Status status = ValidateRequest(*spec_, request.get());
  if (!status.ok()) return status;
  request->model_name = spec_->name;
  request->model_version = spec_->version;
  request->spec = spec_;
  // An ensemble step or BLS call of a traced request carries its child trace
  // already. Only requests from a frontend are sampled, as in Triton (whose
  // frontends sample): steps and calls of untraced requests, and warmup, are not.
  if (request->trace) {
    StartTrace(*request);
  } else if (tracer_->active() &&
             request->protocol != InferenceRequest::Protocol::kNone) {
    request->trace =
        tracer_->Sample(spec_->name, ValidTraceparent(request->traceparent));
    if (request->trace) StartTrace(*request);
  }
  if (cache_) {
    const uint64_t start = NowNs();
    const uint64_t key = ResponseCache::Key(*request);
    if (cache_->remote()) return LookUpRemotely(request, key, start);
    // Triton looks the request up before queueing it: a hit is answered here,
    // without admission, queue or execution; a miss carries its key to the
    // BatchRunner, which caches the response.
    std::unique_ptr<InferenceResponse> cached = cache_->Lookup(key);
    const uint64_t end = NowNs();
    if (cached) {
      request->enqueue_ns = start;
      stats_->RecordCacheHit(end - start, 0, end - start);
      request->Respond(std::move(cached));
      return Status::Ok();
    }
    request->response_cache = cache_;
    request->cache_key = key;
    request->cache_lookup_ns = end - start;
  }
  if (!Admit(request)) return Overloaded();
  if (request->trace) request->trace->Record(trace_activity::kQueueStart);
  status = scheduler_->Enqueue(request, caller_waits);
  if (!status.ok()) request->ReleaseInflight();
  return status;
}

Status Model::ExecuteOn(int instance, const std::vector<RequestPtr>& requests,
                        const std::vector<Tensor>& override_inputs) {
  if (requests.empty()) {
    return Status(StatusCode::kInvalidArg, "no requests to execute");
  }
  for (const auto& request : requests) {
    Status status = ValidateRequest(*spec_, request.get());
    if (!status.ok()) return status;
    request->model_name = spec_->name;
    request->model_version = spec_->version;
    request->spec = spec_;
  }
  // After validation, which would refuse names the config does not list; the
  // requests share the tensors' (read-only) data.
  for (const auto& request : requests) {
    request->inputs.insert(request->inputs.end(), override_inputs.begin(),
                           override_inputs.end());
  }
  return scheduler_->ExecuteOn(instance, requests);
}

bool Model::Admit(const RequestPtr& request) {
  if (!inflight_->TryAdmit()) {
    stats_->RecordFailure(FailureReason::kRejected, 0);
    return false;
  }
  request->HoldInflight(inflight_);
  return true;
}

Status Model::Overloaded() const {
  return Status(StatusCode::kUnavailable,
                "server is overloaded: " + std::to_string(inflight_->server().limit()) +
                    " requests in flight (--max-inflight-requests)");
}

Status Model::LookUpRemotely(const RequestPtr& request, uint64_t key, uint64_t start) {
  // Admitted before the lookup, unlike a local one: the request is in flight while
  // the store answers, so an unload or shutdown drain waits for it, and the limit
  // bounds how many lookups can pile up behind a slow store.
  if (!Admit(request)) return Overloaded();
  std::weak_ptr<Model> weak = weak_from_this();
  if (weak.expired()) {
    // Not owned by a shared_ptr (a unit test's model): look up on this thread.
    ContinueAfterLookup(request, key, start, cache_->Lookup(key));
    return Status::Ok();
  }
  cache_->LookupAsync(key, [weak, request, key, start,
                            stats = stats_](std::unique_ptr<InferenceResponse> hit) {
    if (std::shared_ptr<Model> model = weak.lock()) {
      model->ContinueAfterLookup(request, key, start, std::move(hit));
    } else if (hit) {
      // The model was unloaded meanwhile; the stored answer is still its answer.
      request->enqueue_ns = start;
      const uint64_t took = NowNs() - start;
      stats->RecordCacheHit(took, 0, took);
      request->Respond(std::move(hit));
    } else {
      request->RespondError(Status(StatusCode::kUnavailable,
                                   "model '" + request->model_name +
                                       "' was unloaded while its request waited for "
                                       "the response cache"));
    }
  });
  return Status::Ok();
}

void Model::ContinueAfterLookup(const RequestPtr& request, uint64_t key, uint64_t start,
                                std::unique_ptr<InferenceResponse> hit) {
  const uint64_t end = NowNs();
  if (hit) {
    request->enqueue_ns = start;
    stats_->RecordCacheHit(end - start, 0, end - start);
    request->Respond(std::move(hit));
    return;
  }
  if (request->IsCancelled()) {
    request->RespondError(Status(StatusCode::kCancelled, "request cancelled"));
    return;
  }
  request->response_cache = cache_;
  request->cache_key = key;
  request->cache_lookup_ns = end - start;
  if (request->trace) request->trace->Record(trace_activity::kQueueStart);
  // Enqueue already answered OK to the frontend, so a refusal now is the request's
  // response (RespondError also gives back its admission).
  Status status = scheduler_->Enqueue(request, /*caller_waits=*/false);
  if (!status.ok()) request->RespondError(status);
}

void Model::StartTrace(InferenceRequest& request) {
  RequestTrace& trace = *request.trace;
  trace.SetModel(spec_->name, spec_->version, request.id);
  if (!request.traceparent.empty()) {
    trace.SetParentContext(request.traceparent, request.tracestate);
  }
  if (request.recv_start_ns != 0) {
    const bool http = request.protocol == InferenceRequest::Protocol::kHttp;
    trace.Record(
        http ? trace_activity::kHttpRecvStart : trace_activity::kGrpcWaitReadStart,
        request.recv_start_ns);
    trace.Record(
        http ? trace_activity::kHttpRecvEnd : trace_activity::kGrpcWaitReadEnd,
        request.recv_end_ns != 0 ? request.recv_end_ns : request.recv_start_ns);
  }
  trace.Record(trace_activity::kRequestStart);
  if (trace.tensors()) {
    for (const Tensor& input : request.inputs) {
      trace.RecordTensor(trace_activity::kTensorQueueInput, input);
    }
  }
}

Status Model::UpdateInstances(std::vector<std::shared_ptr<Executor>> added,
                              const std::vector<int>& retired, bool hold_added) {
  std::vector<std::weak_ptr<RateLimiter::Slot>> limits;
  for (const auto& instance : added) {
    if (instance && instance->rate_limit) limits.push_back(instance->rate_limit);
  }
  Status status = scheduler_->UpdateInstances(std::move(added), retired, hold_added);
  if (status.ok()) {
    std::lock_guard<std::mutex> lock(rate_limits_mu_);
    // Slots of instances retired before are gone: drop what they left behind.
    rate_limits_.erase(std::remove_if(rate_limits_.begin(), rate_limits_.end(),
                                      [](const auto& slot) { return slot.expired(); }),
                       rate_limits_.end());
    rate_limits_.insert(rate_limits_.end(), limits.begin(), limits.end());
  }
  return status;
}

Status Model::ReleaseInstances(const std::vector<int>& instances) {
  return scheduler_->ReleaseInstances(instances);
}

bool Model::WaitRetired(const std::vector<int>& instances,
                        std::chrono::nanoseconds timeout) {
  return scheduler_->WaitRetired(instances, timeout);
}

bool Model::Cancel(const RequestPtr& request) { return scheduler_->Cancel(request); }

size_t Model::PendingCount() const { return scheduler_->PendingCount(); }

size_t Model::InflightCount() const { return static_cast<size_t>(inflight_->count()); }

bool Model::WaitIdle(std::chrono::nanoseconds timeout) {
  return inflight_->WaitIdle(timeout);
}

void Model::Stop(bool drain) {
  if (!drain) {
    std::lock_guard<std::mutex> lock(rate_limits_mu_);
    for (const auto& weak : rate_limits_) {
      if (auto slot = weak.lock()) slot->Abandon();
    }
  }
  if (scheduler_) scheduler_->Stop(drain);
}

}  // namespace tritonx
