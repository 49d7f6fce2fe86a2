// ModelStats: the one place where a model version's counters live. The statistics API
// and the Prometheus metrics both read these, so the two can never disagree.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "latency_summary.h"

namespace tritonx {

enum class FailureReason { kRejected = 0, kCanceled = 1, kBackend = 2, kOther = 3 };

struct Duration {
  uint64_t count = 0;
  uint64_t ns = 0;
};

struct BatchStat {
  uint64_t count = 0;
  uint64_t compute_input_ns = 0;
  uint64_t compute_infer_ns = 0;
  uint64_t compute_output_ns = 0;
};

// Triton's per-response statistics (statistics extension `response_stats`): what
// happened to the i-th response of a request, aggregated over requests. Only decoupled
// models record them (Triton's core fills them from the backend's reports only).
struct ResponseStat {
  Duration compute_infer, compute_output, success, fail, empty_response, cancel;
};

// What a response was: data, an error, the FINAL flag without data, or a cancellation.
enum class ResponseOutcome { kSuccess = 0, kFail = 1, kEmpty = 2, kCancel = 3 };

struct StatsSnapshot {
  uint64_t inference_count = 0;  // batch items executed
  uint64_t execution_count = 0;  // backend executions
  uint64_t last_inference_ms = 0;
  Duration success, fail, queue, compute_input, compute_infer, compute_output;
  Duration cache_hit, cache_miss;       // response cache: lookups answered / executed
  uint64_t failures[4] = {0, 0, 0, 0};  // indexed by FailureReason
  std::map<uint64_t, BatchStat> batch_stats;
  std::map<uint64_t, ResponseStat> response_stats;  // by response index (0, 1, ...)
};

// The durations with a latency summary, in the order LatencySummaries() gives them
// (Triton's summary families, observed in whole microseconds like Triton's).
enum class LatencyKind {
  kRequest = 0,
  kQueue = 1,
  kComputeInput = 2,
  kComputeInfer = 3,
  kComputeOutput = 4,
  kCacheHit = 5,
  kCacheMiss = 6,
};
inline constexpr size_t kLatencyKinds = 7;

// Thread safe: every method may be called from any thread.
class ModelStats {
 public:
  // `summaries`: the server's --metrics-config summary settings; null (the default)
  // keeps none, and then recording costs one branch more than without them.
  explicit ModelStats(std::shared_ptr<const LatencySummaryOptions> summaries = nullptr);

  // A request finished successfully; durations in ns.
  void RecordSuccess(uint64_t request_ns, uint64_t queue_ns, uint64_t input_ns,
                     uint64_t infer_ns, uint64_t output_ns);
  // A request failed. Failures before execution (queue timeout, cancellation) have no
  // compute durations; Triton counts them as failures with their reason.
  void RecordFailure(FailureReason reason, uint64_t request_ns);
  // One backend execution of `batch_size` items. A failed execution counts as an
  // execution but, as in Triton, performs no inferences. `fillers`: items of the
  // batch that were a sequence batcher's null requests (executed, not inferences).
  void RecordExecution(uint64_t batch_size, uint64_t input_ns, uint64_t infer_ns,
                       uint64_t output_ns, bool succeeded = true, uint64_t fillers = 0);

  // The response with index `index` of some request: it started at `start_ns` (its
  // request's dispatch for the first, else the previous response's end), its output
  // handling at `output_start_ns` (the backend handed it to the sender) and it was
  // delivered at `end_ns`. Durations split as in Triton's InferenceStatsAggregator.
  void RecordResponse(uint64_t index, ResponseOutcome outcome, uint64_t start_ns,
                      uint64_t output_start_ns, uint64_t end_ns);

  // Response cache, as Triton counts it: a hit is a success (no execution, no
  // inference) with its request and queue durations and the lookup as hit time; a
  // miss adds its lookup and insertion time to the request's success duration.
  void RecordCacheHit(uint64_t request_ns, uint64_t queue_ns, uint64_t hit_ns);
  void RecordCacheMiss(uint64_t miss_ns);

  StatsSnapshot Snapshot() const;

  // One snapshot per LatencyKind, in its order; empty when summaries are off. The
  // windows are copied under the lock and their quantiles computed after it.
  std::vector<SummarySnapshot> LatencySummaries() const;

 private:
  // Under mu_: observes `us` of `kind` (summaries on only).
  void Observe(LatencyKind kind, uint64_t us, uint64_t now_ns);

  mutable std::mutex mu_;
  StatsSnapshot stats_;
  std::vector<LatencySummary> summaries_;  // kLatencyKinds entries, or none (off)
};

}  // namespace tritonx
