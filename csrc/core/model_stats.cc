#include "model_stats.h"

#include <algorithm>
#include <chrono>

namespace tritonx {
namespace {
uint64_t WallClockMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}
void Add(Duration& d, uint64_t ns) {
  d.count += 1;
  d.ns += ns;
}
}  // namespace

void ModelStats::RecordSuccess(uint64_t request_ns, uint64_t queue_ns,
                               uint64_t input_ns, uint64_t infer_ns,
                               uint64_t output_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  Add(stats_.success, request_ns);
  Add(stats_.queue, queue_ns);
  Add(stats_.compute_input, input_ns);
  Add(stats_.compute_infer, infer_ns);
  Add(stats_.compute_output, output_ns);
}

void ModelStats::RecordFailure(FailureReason reason, uint64_t request_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  Add(stats_.fail, request_ns);
  stats_.failures[static_cast<int>(reason)] += 1;
}

void ModelStats::RecordExecution(uint64_t batch_size, uint64_t input_ns,
                                 uint64_t infer_ns, uint64_t output_ns, bool succeeded,
                                 uint64_t fillers) {
  std::lock_guard<std::mutex> lock(mu_);
  if (succeeded) stats_.inference_count += batch_size - fillers;
  stats_.execution_count += 1;
  stats_.last_inference_ms = WallClockMs();
  BatchStat& batch = stats_.batch_stats[batch_size];
  batch.count += 1;
  batch.compute_input_ns += input_ns;
  batch.compute_infer_ns += infer_ns;
  batch.compute_output_ns += output_ns;
}

void ModelStats::RecordResponse(uint64_t index, ResponseOutcome outcome,
                                uint64_t start_ns, uint64_t output_start_ns,
                                uint64_t end_ns) {
  // Clocks read on different threads may be a little out of order; never wrap.
  output_start_ns = std::clamp(output_start_ns, std::min(start_ns, end_ns), end_ns);
  start_ns = std::min(start_ns, output_start_ns);
  const uint64_t total_ns = end_ns - start_ns;
  const uint64_t infer_ns = output_start_ns - start_ns;
  const uint64_t output_ns = end_ns - output_start_ns;
  std::lock_guard<std::mutex> lock(mu_);
  ResponseStat& stat = stats_.response_stats[index];
  switch (outcome) {
    case ResponseOutcome::kSuccess:
      Add(stat.compute_infer, infer_ns);
      Add(stat.compute_output, output_ns);
      Add(stat.success, total_ns);
      break;
    case ResponseOutcome::kFail:
      // An error carries no output tensors: Triton counts the whole span as compute
      // infer and no compute output.
      Add(stat.compute_infer, total_ns);
      Add(stat.fail, total_ns);
      break;
    case ResponseOutcome::kEmpty:
      Add(stat.compute_infer, total_ns);
      Add(stat.empty_response, total_ns);
      break;
    case ResponseOutcome::kCancel:
      Add(stat.cancel, total_ns);
      break;
  }
}

void ModelStats::RecordCacheHit(uint64_t request_ns, uint64_t queue_ns,
                                uint64_t hit_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  Add(stats_.success, request_ns);
  Add(stats_.queue, queue_ns);
  Add(stats_.cache_hit, hit_ns);
}

void ModelStats::RecordCacheMiss(uint64_t miss_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.success.ns += miss_ns;
  Add(stats_.cache_miss, miss_ns);
}

StatsSnapshot ModelStats::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace tritonx
