// Settings of Triton's sequence batcher (the model config's sequence_batching block),
// as the core needs them. Built by the Python config layer (config/to_core.py), which
// also turns the control values of the config (int32/fp32/bool false/true pairs) into
// the bytes the model receives, so the core never interprets them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data_type.h"
#include "tensor.h"

namespace tritonx {

enum class SequenceStrategy { kNone = 0, kDirect = 1, kOldest = 2 };

enum class SequenceControlKind { kStart = 0, kEnd = 1, kReady = 2, kCorrId = 3 };

// One control input the batcher adds to every request it hands the model.
struct SequenceControl {
  SequenceControlKind kind = SequenceControlKind::kStart;
  std::string name;
  DataType dtype = DataType::kInvalid;
  // START/END/READY: one element each, already in `dtype`'s wire bytes.
  std::string false_value;
  std::string true_value;
};

// One implicit state: the model's `output_name` of one step becomes its `input_name`
// in the next step of the same sequence.
struct SequenceStateSpec {
  std::string input_name;
  std::string output_name;
  DataType dtype = DataType::kInvalid;
  Shape dims;  // without the batch dim
  // The state at START: `initial_shape` with `initial_data` (its bytes), or zeros of
  // `dims` (-1 read as 0) when there is no initial_state.
  bool has_initial = false;
  Shape initial_shape;
  std::string initial_data;
};

struct SequenceBatchingConfig {
  SequenceStrategy strategy = SequenceStrategy::kNone;
  uint64_t max_sequence_idle_us = 1'000'000;
  // direct
  uint64_t max_queue_delay_us = 0;  // also the oldest strategy's delay
  float minimum_slot_utilization = 0.0f;
  // oldest
  int32_t max_candidate_sequences = 0;  // 0: max_batch_size
  std::vector<int32_t> preferred_batch_sizes;
  bool preserve_ordering = false;
  std::vector<SequenceControl> controls;
  std::vector<SequenceStateSpec> states;
  // The CORRID control's type, when there is one: TYPE_STRING models take string ids.
  DataType corrid_dtype = DataType::kInvalid;
  // iterative_sequence: one request is a whole sequence (no correlation id needed:
  // the batcher gives it one), and the backend may reschedule it for further
  // executions until it is answered (continuous batching).
  bool iterative = false;
};

}  // namespace tritonx
