// Gathering a batch's inputs into contiguous buffers and slicing batched outputs back
// into per-request responses, for backends that run one tensor per batch (ONNX
// Runtime). Runs on the scheduler's worker thread, never under the GIL.
#pragma once

#include "executor.h"
#include "model_spec.h"
#include "status.h"
#include "tensor_arena.h"

namespace tritonx {

// Fills batch->gathered_inputs: per input, the requests' data concatenated along dim 0
// (one request: its tensor as is, no copy, unless `copy_single`: a GPU instance
// wants even one request's bytes in the arena's page-locked memory, where its
// host->device copy is asynchronous). Copies go into `arena` buffers.
// Ragged batching, for any number of requests: an allow_ragged_batch input is one
// 1-D tensor of every request's elements, and the spec's batch inputs follow the
// model inputs (batch_inputs.h).
Status GatherInputs(const ModelSpec& spec, TensorArena& arena, Batch* batch,
                    bool copy_single = false);

// Slices batch->gathered_outputs (dim 0 = total batch size) into one response per
// request; slices share the batched buffer and its memory type, nothing is copied,
// except that a batched GPU output some request needs in host memory (BYTES, or
// not InferenceRequest::KeepsOnDevice) is copied device->host once, whole, into
// an `arena` buffer, instead of once per request later in Send.
// A BATCH_SCATTER_WITH_INPUT_SHAPE output is split by its source input's shapes
// instead (each request's share has that input's dims where the output's are -1),
// for one request too.
Status ScatterOutputs(const ModelSpec& spec, Batch* batch,
                      TensorArena* arena = nullptr);

}  // namespace tritonx
