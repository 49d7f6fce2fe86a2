// ModelStats: the one place where a model version's counters live. The statistics API
// and the Prometheus metrics both read these, so the two can never disagree.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>

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

// Thread safe: every method may be called from any thread.
class ModelStats {
 public:
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

 private:
  mutable std::mutex mu_;
  StatsSnapshot stats_;
};

}  // namespace tritonx
