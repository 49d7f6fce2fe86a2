// InferenceRequest / InferenceResponse: what the frontends hand the core and get back.
//
// A request is shared (std::shared_ptr) between the frontend that built it, the
// scheduler's queue and the executing instance; whoever holds it last frees it. The
// response callback is invoked exactly once per request, from whatever thread
// finishes it (a scheduler worker, the timeout sweeper, or the canceller).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "status.h"
#include "tensor.h"

namespace tritonx {

class InflightLimit;

using ParameterValue = std::variant<bool, int64_t, uint64_t, double, std::string>;
using Parameters = std::vector<std::pair<std::string, ParameterValue>>;

struct InferenceResponse {
  Status status;
  std::string model_name;
  int64_t model_version = 0;
  std::string id;
  std::vector<Tensor> outputs;
  Parameters parameters;
};

using ResponseFn = std::function<void(std::unique_ptr<InferenceResponse>)>;

// Monotonic clock in nanoseconds, the time base of every duration the core records.
uint64_t NowNs();

class InferenceRequest {
 public:
  InferenceRequest();
  ~InferenceRequest();
  InferenceRequest(const InferenceRequest&) = delete;
  InferenceRequest& operator=(const InferenceRequest&) = delete;

  // --- set by the frontend ---
  std::string id;
  std::vector<Tensor> inputs;
  std::vector<std::string> requested_outputs;  // empty: every output of the model
  Parameters parameters;                       // custom parameters for the backend
  uint64_t priority = 0;                       // 0: the model's default level
  uint64_t timeout_us = 0;                     // 0: the queue policy's default
  uint64_t correlation_id = 0;
  std::string correlation_id_str;
  uint32_t flags = 0;
  // Opaque state owned on behalf of the frontend or backend (e.g. a Python object);
  // released with the request.
  std::shared_ptr<void> frontend_context;
  // The response callback needs the executing instance's context (a Python future
  // needs the GIL, which a Python backend's executor already holds): such requests
  // are answered from inside Execute rather than after it.
  bool deliver_in_executor = false;

  // Installs the completion callback. Must be set before the request is enqueued.
  void SetResponseCallback(ResponseFn fn) { on_response_ = std::move(fn); }

  // Delivers the response. The first call wins; later calls are dropped (and return
  // false) so that a request racing between cancellation and execution is answered
  // once. Thread safe.
  bool Respond(std::unique_ptr<InferenceResponse> response);

  // Convenience: respond with an error status.
  bool RespondError(const Status& status);

  bool responded() const { return responded_.load(std::memory_order_acquire); }

  // The request holds one slot of `limit` until it is answered or destroyed (see
  // InflightLimit). Set by Model::Enqueue once the slot is taken.
  void HoldInflightSlot(InflightLimit* limit) { inflight_slot_ = limit; }
  void ReleaseInflightSlot();

  // Cancellation is cooperative once a request is executing: backends may poll this.
  void MarkCancelled() { cancelled_.store(true, std::memory_order_release); }
  bool IsCancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // --- filled by Model::Enqueue and the scheduler ---
  std::string model_name;
  int64_t model_version = 0;
  int64_t batch_size = 1;  // dim 0 when the model batches, else 1
  std::string shape_key;   // non-batch dims of every input; equal keys batch together
  uint64_t uid = 0;        // unique per process, used by Cancel
  uint64_t enqueue_ns = 0;
  uint64_t dispatch_ns = 0;
  uint64_t deadline_ns = 0;  // 0: no queue timeout
  uint32_t priority_level = 0;

 private:
  ResponseFn on_response_;
  std::atomic<InflightLimit*> inflight_slot_{nullptr};
  std::atomic<bool> responded_{false};
  std::atomic<bool> cancelled_{false};
};

using RequestPtr = std::shared_ptr<InferenceRequest>;

}  // namespace tritonx
