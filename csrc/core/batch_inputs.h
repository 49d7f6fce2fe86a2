// Ragged batching's batch inputs: tensors the core makes for each batch from the
// shapes of its requests' inputs (model_config.proto BatchInput), for executors that
// run one tensor per batch. Values and shapes follow Triton's
// backend_input_collector (BatchInputShape / ProcessBatchInput).
#pragma once

#include <cstdint>
#include <vector>

#include "executor.h"
#include "model_spec.h"
#include "status.h"
#include "tensor_arena.h"

namespace tritonx {

// The shape and values (in order, before conversion to the configured type) of one
// batch input for `requests`. Each request counts once in the element-count kinds,
// its batch dim included ([2, 3] counts 6); the item-shape kinds have one row per
// batch item (a request of batch size 2 gives two equal rows of its non-batch dims).
// BATCH_MAX_ELEMENT_COUNT_AS_SHAPE's values are zeros (only its shape says
// anything; Triton leaves them unset). Fails with INVALID_ARG when a request lacks
// the source input (an optional one left out) or an item-shape kind's source has
// no batch dim. Pure function; thread safe.
Status ComputeBatchInput(const BatchInputSpec& batch_input,
                         const std::vector<RequestPtr>& requests, Shape* shape,
                         std::vector<int64_t>* values);

// Appends to batch->gathered_inputs one tensor per target name of every batch input
// of `spec` (all targets of one batch input share one arena buffer, which
// batch->arena_blocks keeps), in the configured data type (INT32 or FP32).
// Called by GatherInputs on the scheduler's worker thread.
Status AppendBatchInputs(const ModelSpec& spec, TensorArena& arena, Batch* batch);

}  // namespace tritonx
