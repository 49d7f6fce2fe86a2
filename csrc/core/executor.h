// Executor: the backend side of a model instance, as the scheduler sees it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "infer_request.h"
#include "rate_limiter.h"
#include "tensor_arena.h"

namespace tritonx {

// One execution's worth of requests, handed to an instance.
struct Batch {
  std::vector<RequestPtr> requests;
  int64_t total_batch_size = 0;
  int instance_index = 0;
  // Set when the batch runs on the thread that enqueued its one request (see
  // Executor::AllowsInline) rather than on the instance's worker.
  bool inline_run = false;

  // Filled by the scheduler before Execute when the executor wants gathered inputs:
  // one tensor per model input, every request's data concatenated along dim 0, in
  // arena buffers owned by `arena_blocks`.
  std::vector<Tensor> gathered_inputs;
  std::vector<ArenaBuffer> arena_blocks;

  // Filled by Execute. Either one response per request (same order as `requests`),
  // or, for gathered executors, `gathered_outputs` covering the whole batch, which
  // the scheduler slices back into per-request responses. A null response or a
  // missing output set fails the request with INTERNAL.
  std::vector<std::unique_ptr<InferenceResponse>> responses;
  std::vector<Tensor> gathered_outputs;
  Status batch_status;  // non-OK: every request of the batch fails with it

  // Timestamps (NowNs()) the executor may set to split compute time into input,
  // infer and output stages. Unset stages count as zero; an executor that sets none
  // has its whole run counted as infer.
  uint64_t compute_input_end_ns = 0;
  uint64_t compute_infer_end_ns = 0;

  // Records statistics and delivers the responses; runs once. An executor may call it
  // at the end of Execute while it still holds a lock the response callbacks need
  // (the GIL, for Python futures), saving them a second acquisition; otherwise the
  // scheduler calls it after Execute returns.
  std::function<void()> finish;
};

class Executor {
 public:
  virtual ~Executor() = default;
  // Whether the scheduler should gather the batch's inputs into contiguous buffers.
  virtual bool WantsGatheredInputs() const { return false; }
  // Whether a gathered batch of one request is copied into the arena too (a GPU
  // instance: page-locked memory makes its host->device copy asynchronous).
  virtual bool WantsStagedInputs() const { return false; }
  // Whether a single request may run on the thread that enqueues it (when this
  // instance is idle and the model measured cheap), instead of waking the worker.
  // Execute must then be safe on any thread, not just the instance's own worker.
  virtual bool AllowsInline() const { return false; }
  // Runs one batch on this instance. Called on the instance's own worker thread, one
  // batch at a time. Must not throw.
  virtual void Execute(Batch& batch) = 0;

  // This instance's place in its server's rate limiter, when rate limiting is on
  // (set before the instance reaches its scheduler; reset by the instance's worker
  // when it leaves after an instance update retired it, which gives the resources
  // back). BatchRunner takes it around every execution, so every scheduler kind is
  // rate limited alike.
  std::shared_ptr<RateLimiter::Slot> rate_limit;
};

}  // namespace tritonx
