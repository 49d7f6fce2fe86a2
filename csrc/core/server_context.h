// ServerContext: what the models of one server share, handed to each Model instead
// of process globals — the registry the frontends find models in, the tensor arena,
// the server-wide admission limit, the system shared memory regions, the rate
// limiter, the tracer, the response cache and the latency summary settings.
//
// Thread safety: the accessors are thread safe; the objects they return state their
// own rules. Ownership: shared by the server and its frontends. A Model keeps only
// the pieces it uses (arena, limit), never the context, because the registry holds
// the models: the context owning them back would be a cycle.
#pragma once

#include <memory>

#include "inflight_limit.h"
#include "latency_summary.h"
#include "model_registry.h"
#include "rate_limiter.h"
#include "response_cache.h"
#include "shared_memory_registry.h"
#include "tensor_arena.h"
#include "trace.h"

namespace tritonx {

class ServerContext {
 public:
  // `arena` null: the process's default arena (pinned memory is a per-process
  // resource, so servers in one process share one pinned pool).
  explicit ServerContext(std::shared_ptr<TensorArena> arena = nullptr)
      : registry_(std::make_shared<ModelRegistry>()),
        arena_(arena ? std::move(arena) : TensorArena::Global()),
        inflight_limit_(std::make_shared<InflightLimit>()),
        shared_memory_(std::make_shared<SharedMemoryRegistry>()),
        rate_limiter_(std::make_shared<RateLimiter>()),
        tracer_(std::make_shared<Tracer>()) {}
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  const std::shared_ptr<ModelRegistry>& registry() const { return registry_; }
  const std::shared_ptr<TensorArena>& arena() const { return arena_; }
  const std::shared_ptr<InflightLimit>& inflight_limit() const {
    return inflight_limit_;
  }
  // The system shared memory regions clients registered (both frontends).
  const std::shared_ptr<SharedMemoryRegistry>& shared_memory() const {
    return shared_memory_;
  }
  // Off unless the server configures it (--rate-limit); instances register when
  // their model is built.
  const std::shared_ptr<RateLimiter>& rate_limiter() const { return rate_limiter_; }
  // Request tracing (the trace extension); off until a setting turns it on.
  const std::shared_ptr<Tracer>& tracer() const { return tracer_; }
  // The response cache (--cache-config local,size=N); null when the server has
  // none. Set once at server start, before any model is built.
  const std::shared_ptr<ResponseCache>& response_cache() const {
    return response_cache_;
  }
  void SetResponseCache(std::shared_ptr<ResponseCache> cache) {
    response_cache_ = std::move(cache);
  }

  // --metrics-config summary_latencies=true: the summaries' settings, which every
  // model built afterwards records with (ModelStats); null (the default): none.
  // Set once at server start, before any model is built.
  const std::shared_ptr<const LatencySummaryOptions>& latency_summaries() const {
    return latency_summaries_;
  }
  void SetLatencySummaries(std::shared_ptr<const LatencySummaryOptions> options) {
    latency_summaries_ = std::move(options);
  }

  // The context of models built outside any server (unit tests, tools).
  static const std::shared_ptr<ServerContext>& Default() {
    static const auto* context = new std::shared_ptr<ServerContext>(
        std::make_shared<ServerContext>());  // never destroyed (see TensorArena)
    return *context;
  }

 private:
  const std::shared_ptr<ModelRegistry> registry_;
  const std::shared_ptr<TensorArena> arena_;
  const std::shared_ptr<InflightLimit> inflight_limit_;
  const std::shared_ptr<SharedMemoryRegistry> shared_memory_;
  const std::shared_ptr<RateLimiter> rate_limiter_;
  const std::shared_ptr<Tracer> tracer_;
  std::shared_ptr<ResponseCache> response_cache_;
  std::shared_ptr<const LatencySummaryOptions> latency_summaries_;
};

}  // namespace tritonx
