// Model: one served model version — its spec, its scheduler and its statistics.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "executor.h"
#include "infer_request.h"
#include "inflight_limit.h"
#include "model_spec.h"
#include "model_stats.h"
#include "rate_limiter.h"
#include "response_cache.h"
#include "scheduler_config.h"
#include "status.h"
#include "tensor_arena.h"
#include "trace.h"

namespace tritonx {

class Scheduler;
class ServerContext;

class Model : public std::enable_shared_from_this<Model> {
 public:
  // Starts one worker thread per executor. `context`: the server this model belongs
  // to (its arena and admission limit); null means ServerContext::Default().
  Model(ModelSpec spec, SchedulerConfig config,
        std::vector<std::shared_ptr<Executor>> instances,
        const ServerContext* context = nullptr);
  ~Model();  // Stop()
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelSpec& spec() const { return *spec_; }
  const SchedulerConfig& scheduler_config() const { return config_; }

  // Validates the request against the spec, stamps it and queues it. On OK the
  // request's response callback runs exactly once, later, from a core thread (or
  // inline if the request fails in the queue right away). On a non-OK return the
  // request was not taken, its callback will never run and has been dropped here
  // (a callback holding what holds the request, as frontends' do, would otherwise
  // keep both alive for good); drop happens on the calling thread, so a Python
  // caller's callback is released under its GIL. Thread safe.
  //
  // `caller_waits`: the calling thread does nothing but wait for this response (a
  // blocking infer, a BLS call from inside another model). Only then may the
  // scheduler run the request on that thread ("inline dispatch"). Frontends pass
  // false: their threads serve other connections, and model code running there
  // would stall every one of them for as long as the model takes.
  Status Enqueue(const RequestPtr& request, bool caller_waits = false);

  // Model warmup (Triton's): runs `requests` as one batch on instance `instance`
  // (an index into the executors the model was built with), past the queue, the
  // batching rules, the response cache, tracing and the in-flight limit. Each
  // request is validated as by Enqueue; on a non-OK return none was taken (the
  // first refusal, UNAVAILABLE when stopping, UNSUPPORTED for an ensemble). Then
  // `override_inputs` (Triton's override inputs: a warmup sample's inputs the config
  // does not list, such as sequence controls) are added to every request unchecked.
  // On OK each is answered through its callback, from the instance's worker, and
  // counted in the statistics like any request. Thread safe.
  Status ExecuteOn(int instance, const std::vector<RequestPtr>& requests,
                   const std::vector<Tensor>& override_inputs = {});

  // Triton's in-place instance update (see Scheduler::UpdateInstances): `added`
  // become instances numbered after every instance so far (the executors the model
  // was built with are 0..n-1), those numbered in `retired` finish what they hold and
  // leave. Requests keep flowing to the other instances throughout. Thread safe.
  // `hold_added`: they run only ExecuteOn's batches (warmup) until ReleaseInstances.
  Status UpdateInstances(std::vector<std::shared_ptr<Executor>> added,
                         const std::vector<int>& retired, bool hold_added = false);
  // Lets held instances take the model's work.
  Status ReleaseInstances(const std::vector<int>& instances);
  // Blocks until each instance numbered in `instances` was retired and runs nothing
  // more, or `timeout` passes; true when all have left. Thread safe.
  bool WaitRetired(const std::vector<int>& instances, std::chrono::nanoseconds timeout);

  // Removes a still-queued request and answers it CANCELLED; returns false if it is
  // no longer queued (then it is only marked cancelled for the backend to see).
  bool Cancel(const RequestPtr& request);

  // Requests waiting for an instance.
  size_t PendingCount() const;
  // Requests taken and not yet answered with FINAL (queued, executing, or streaming
  // from a decoupled model): what a drain waits for.
  size_t InflightCount() const;
  // Blocks until InflightCount() is 0 or `timeout` passes; true when idle. Thread safe.
  bool WaitIdle(std::chrono::nanoseconds timeout);
  StatsSnapshot Statistics() const { return stats_->Snapshot(); }
  // Latency summaries by LatencyKind; empty unless the server enables them
  // (ServerContext::latency_summaries when this model was built). Thread safe.
  std::vector<SummarySnapshot> LatencySummaries() const {
    return stats_->LatencySummaries();
  }
  // Some trace setting is on: frontends then look for a traceparent header.
  bool Tracing() const { return tracer_->active(); }
  const std::shared_ptr<Tracer>& tracer() const { return tracer_; }

  // Stops accepting, runs every request already queued (an unload or reload loses
  // nothing that was accepted), then joins the workers. Blocking; idempotent. With
  // `drain` false (shutdown past its grace period) queued requests fail UNAVAILABLE
  // instead and only the batches already executing finish.
  void Stop(bool drain = true);

 private:
  // Shared with every request it admits (output filtering in Send may run after
  // the model is gone).
  std::shared_ptr<const ModelSpec> spec_;
  SchedulerConfig config_;
  std::shared_ptr<ModelStats> stats_;
  std::shared_ptr<InflightCounter> inflight_;
  std::unique_ptr<Scheduler> scheduler_;
  // The instances' rate limiter slots (Executor::rate_limit, which owns them: a
  // retired instance's slot goes with it): Stop without drain abandons them, so that
  // no worker keeps waiting for another model's resources. Guarded by
  // rate_limits_mu_ (instance updates add to it).
  std::mutex rate_limits_mu_;
  std::vector<std::weak_ptr<RateLimiter::Slot>> rate_limits_;
  // The server's response cache when this model uses it (Triton: enabled in the
  // config and on the server, not decoupled); null otherwise.
  std::shared_ptr<ResponseCache> cache_;
  // The server's tracer (never null); sampled requests get a RequestTrace.
  std::shared_ptr<Tracer> tracer_;

  void StartTrace(InferenceRequest& request);
  // Admission (--max-inflight-requests): false when the server is at its limit.
  bool Admit(const RequestPtr& request);
  Status Overloaded() const;
  // A remote response cache: the store is asked off the caller's thread, and the
  // request continues (answered from the cache, or queued) from the cache's thread.
  // Enqueue but for dropping the callbacks of a request not taken.
  Status Take(const RequestPtr& request, bool caller_waits);
  Status LookUpRemotely(const RequestPtr& request, uint64_t key, uint64_t start);
  void ContinueAfterLookup(const RequestPtr& request, uint64_t key, uint64_t start,
                           std::unique_ptr<InferenceResponse> hit);
};

}  // namespace tritonx
