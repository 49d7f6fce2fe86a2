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
uint64_t SteadyNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}
void Add(Duration& d, uint64_t ns) {
  d.count += 1;
  d.ns += ns;
}
}  // namespace

ModelStats::ModelStats(std::shared_ptr<const LatencySummaryOptions> summaries) {
  if (summaries) summaries_.assign(kLatencyKinds, LatencySummary(*summaries));
}

void ModelStats::Observe(LatencyKind kind, uint64_t us, uint64_t now_ns) {
  summaries_[static_cast<size_t>(kind)].Observe(us, now_ns);
}

void ModelStats::RecordSuccess(uint64_t request_ns, uint64_t queue_ns,
                               uint64_t input_ns, uint64_t infer_ns,
                               uint64_t output_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  Add(stats_.success, request_ns);
  Add(stats_.queue, queue_ns);
  Add(stats_.compute_input, input_ns);
  Add(stats_.compute_infer, infer_ns);
  Add(stats_.compute_output, output_ns);
  if (summaries_.empty()) return;
  // Triton observes each duration in whole microseconds (ns / 1000).
  const uint64_t now = SteadyNs();
  Observe(LatencyKind::kRequest, request_ns / 1000, now);
  Observe(LatencyKind::kQueue, queue_ns / 1000, now);
  Observe(LatencyKind::kComputeInput, input_ns / 1000, now);
  Observe(LatencyKind::kComputeInfer, infer_ns / 1000, now);
  Observe(LatencyKind::kComputeOutput, output_ns / 1000, now);
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
  if (summaries_.empty()) return;
  // Triton leaves cache hits out of the request summary (it shows no request
  // summary for models using the cache), and has no compute durations for them.
  const uint64_t now = SteadyNs();
  Observe(LatencyKind::kQueue, queue_ns / 1000, now);
  Observe(LatencyKind::kCacheHit, hit_ns / 1000, now);
}

void ModelStats::RecordCacheMiss(uint64_t miss_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.success.ns += miss_ns;
  Add(stats_.cache_miss, miss_ns);
  if (!summaries_.empty()) Observe(LatencyKind::kCacheMiss, miss_ns / 1000, SteadyNs());
}

StatsSnapshot ModelStats::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::vector<SummarySnapshot> ModelStats::LatencySummaries() const {
  std::vector<LatencySummary> windows;
  uint64_t now = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (summaries_.empty()) return {};
    windows = summaries_;
    now = SteadyNs();
  }
  std::vector<SummarySnapshot> out;
  out.reserve(windows.size());
  for (const LatencySummary& window : windows) out.push_back(window.Snapshot(now));
  return out;
}

}  // namespace tritonx
