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
Status GatherInputs(const ModelSpec& spec, TensorArena& arena, Batch* batch,
                    bool copy_single = false);

// Slices batch->gathered_outputs (dim 0 = total batch size) into one response per
// request; slices share the batched buffer and its memory type, nothing is copied,
// except that a batched GPU output some request needs in host memory (BYTES, or
// not InferenceRequest::KeepsOnDevice) is copied device->host once, whole, into
// an `arena` buffer, instead of once per request later in Send.
Status ScatterOutputs(const ModelSpec& spec, Batch* batch,
                      TensorArena* arena = nullptr);

}  // namespace tritonx
