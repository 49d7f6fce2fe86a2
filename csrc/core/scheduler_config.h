// Scheduling settings of one model: Triton's dynamic_batching block, or the default
// scheduler (one request per execution) when dynamic_batching is false, or the
// sequence batcher when `sequence.strategy` is set.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "sequence_config.h"

namespace tritonx {

class BatchStrategy;
struct EnsembleSpec;

enum class TimeoutAction { kReject = 0, kDelay = 1 };

struct QueuePolicy {
  TimeoutAction timeout_action = TimeoutAction::kReject;
  uint64_t default_timeout_us = 0;      // 0: requests never time out in the queue
  bool allow_timeout_override = false;  // a request's own timeout may only shorten it
  uint32_t max_queue_size = 0;          // 0: unbounded
};

struct SchedulerConfig {
  int32_t max_batch_size = 0;  // 0: the model does not batch
  bool dynamic_batching = false;
  std::vector<int32_t> preferred_batch_sizes;
  uint64_t max_queue_delay_us = 0;
  bool preserve_ordering = false;
  uint32_t priority_levels = 0;  // 0: a single level
  uint32_t default_priority_level = 0;
  QueuePolicy default_queue_policy;
  std::map<uint32_t, QueuePolicy> priority_queue_policy;
  // A custom batching strategy library (dynamic batching only); null: none.
  std::shared_ptr<BatchStrategy> batch_strategy;
  // Set for an ensemble model (platform "ensemble"): its steps run on the server's
  // composing models through the EnsembleScheduler; the model has no instances.
  std::shared_ptr<const EnsembleSpec> ensemble;
  // sequence_batching: strategy kNone for every other model.
  SequenceBatchingConfig sequence;
};

}  // namespace tritonx
