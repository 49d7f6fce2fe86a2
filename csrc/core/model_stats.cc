#include "model_stats.h"

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
                                 uint64_t infer_ns, uint64_t output_ns,
                                 bool succeeded) {
  std::lock_guard<std::mutex> lock(mu_);
  if (succeeded) stats_.inference_count += batch_size;
  stats_.execution_count += 1;
  stats_.last_inference_ms = WallClockMs();
  BatchStat& batch = stats_.batch_stats[batch_size];
  batch.count += 1;
  batch.compute_input_ns += input_ns;
  batch.compute_infer_ns += infer_ns;
  batch.compute_output_ns += output_ns;
}

StatsSnapshot ModelStats::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace tritonx
