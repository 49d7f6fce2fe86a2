// InferenceRequest / InferenceResponse: what the frontends hand the core and get back.
//
// Ownership: a request is shared (std::shared_ptr) between the frontend that built
// it, the scheduler's queue, the executing instance and, for decoupled models, the
// backend's response sender, which may outlive Execute; whoever holds it last frees
// it (its inputs with it). Being answered and being freed are separate events.
//
// Responding (the response-sender contract): a request is answered through Send, 0..N
// times without kResponseFlagFinal and then exactly once with it. Send may be called
// from any thread, also after Execute returned. After FINAL every Send fails with an
// error status (never a crash). Concurrent Sends on one request are delivered in some
// order, never after FINAL; a backend that needs an order sends from one thread. The
// consumer is the frontend's callback: SetResponseCallback for one response per
// request (non-decoupled models; a non-final Send to it fails UNSUPPORTED), or
// SetResponseStream for every response (decoupled models: gRPC streams, BLS).
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

class InflightCounter;
class ModelStats;
class RequestTrace;
class ResponseCache;
struct ModelSpec;

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

// One response per request: the final one (never null).
using ResponseFn = std::function<void(std::unique_ptr<InferenceResponse>)>;
// Every response of a request; `flags` has kResponseFlagFinal on the last, whose
// response may be null (the stream ends without more data).
using ResponseStreamFn =
    std::function<void(std::unique_ptr<InferenceResponse>, uint32_t flags)>;
constexpr uint32_t kResponseFlagFinal = 1u;

// Monotonic clock in nanoseconds, the time base of every duration the core records.
uint64_t NowNs();

// InferenceRequest::flags: a sequence's first and last request (Triton's
// TRITONSERVER_REQUEST_FLAG_SEQUENCE_START / _END).
constexpr uint32_t kFlagStart = 1u;
constexpr uint32_t kFlagEnd = 2u;

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
  // Classification extension: requested outputs answered as their top-N classes
  // (output name, N > 0); see response_outputs.h.
  std::vector<std::pair<std::string, uint32_t>> class_counts;
  Parameters parameters;    // custom parameters for the backend
  uint64_t priority = 0;    // 0: the model's default level
  uint64_t timeout_us = 0;  // 0: the queue policy's default
  uint64_t correlation_id = 0;
  std::string correlation_id_str;
  uint32_t flags = 0;  // kFlagStart | kFlagEnd (Triton's request flags)
  // Opaque state owned on behalf of the frontend or backend (e.g. a Python object);
  // released with the request.
  std::shared_ptr<void> frontend_context;
  // The response callback needs the executing instance's context (a Python future
  // needs the GIL, which a Python backend's executor already holds): such requests
  // are answered from inside Execute rather than after it.
  bool deliver_in_executor = false;
  // For a trace (Triton's HTTP_RECV_* / GRPC_WAITREAD_* stamps): when the frontend
  // began and finished reading the request (0: not measured), and the W3C trace
  // context headers it arrived with. Read only if the request is sampled.
  enum class Protocol : uint8_t { kNone, kHttp, kGrpc };
  Protocol protocol = Protocol::kNone;
  uint64_t recv_start_ns = 0;
  uint64_t recv_end_ns = 0;
  std::string traceparent;
  std::string tracestate;
  // The request's trace: null unless sampled (Model::Enqueue) or an ensemble step of
  // a sampled request. Every trace hook tests only this pointer.
  std::shared_ptr<RequestTrace> trace;

  // Which outputs may reach the consumer still in GPU memory. By default none:
  // Send copies each GPU output to host memory (PlaceOutputs, response_outputs.h).
  // The request builder names the outputs a client wants in a CUDA shared memory
  // region (copied device->device there); an in-process Python caller (BLS) takes
  // any (`device_outputs_any`), its tensors copying on their first host read.
  bool device_outputs_any = false;
  std::vector<std::string> device_outputs;
  bool KeepsOnDevice(const std::string& output) const {
    if (device_outputs_any) return true;
    for (const auto& name : device_outputs) {
      if (name == output) return true;
    }
    return false;
  }

  // The class count asked for `output` (0: its values as produced).
  uint32_t ClassCount(const std::string& output) const {
    for (const auto& [name, count] : class_counts) {
      if (name == output) return count;
    }
    return 0;
  }

  // Installs the consumer (one of the two). Must be set before the request is
  // enqueued; not thread safe with respect to Send.
  void SetResponseCallback(ResponseFn fn) { on_response_ = std::move(fn); }
  void SetResponseStream(ResponseStreamFn fn) {
    on_stream_ = std::move(fn);
    streams_ = static_cast<bool>(on_stream_);
  }
  // The consumer takes any number of responses.
  bool streams() const { return streams_; }

  // Sends one response (see the contract above). An OK response keeps only the
  // outputs the request asked for, in its order (output reshape undone), when the
  // request came through a Model. Errors: INVALID_ARG after FINAL ("response sender
  // is closed"); UNSUPPORTED for a non-final response to a one-response consumer.
  // Thread safe.
  Status Send(std::unique_ptr<InferenceResponse> response, uint32_t flags);

  // Sends `response` as the final one. The first final answer wins; false when the
  // request was answered already (a request racing between cancellation and
  // execution is answered once). Thread safe.
  bool Respond(std::unique_ptr<InferenceResponse> response);

  // Convenience: a final error response.
  bool RespondError(const Status& status);

  // FINAL was sent.
  bool responded() const {
    return (send_state_.load(std::memory_order_acquire) & kClosedBit) != 0;
  }

  // Admission, by Model::Enqueue: the request holds what `admission` granted (a slot
  // of the server's limit, a count in its model's in-flight number) until it is
  // answered (FINAL) or destroyed, whichever comes first.
  void HoldInflight(std::shared_ptr<InflightCounter> admission);
  // The server-wide count of requests in flight this request was admitted against
  // (null when it was not admitted, e.g. in tests).
  const std::atomic<int64_t>* ServerInflight() const;
  void ReleaseInflight();

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
  // A sequence batcher's filler for an empty batch slot: executed, never answered
  // to anyone, not counted in the statistics.
  bool null_request = false;
  // Iterative sequences (Triton's TRITONSERVER_REQUEST_RELEASE_RESCHEDULE): set by
  // the backend during Execute when this request is to run again in a later batch of
  // its sequence instead of being answered now. Honoured (and cleared) only by a
  // sequence batcher with iterative_sequence; atomic because a decoupled backend may
  // set it from a thread of its own before Execute returns.
  std::atomic<bool> reschedule{false};
  // A non-decoupled request its backend answers through the request's sender
  // (Send), during Execute or later from a thread of its own, not through
  // Execute's result: Triton's response sender in default mode. Set during
  // Execute; BatchRunner then neither answers nor fails it after a successful
  // execution. Also set by a stub process' executor on a decoupled request whose
  // failed execution the stub ended on its response stream: BatchRunner counts the
  // failure but leaves the answer to that stream.
  std::atomic<bool> answered_by_sender{false};
  // How many inputs the request had before the sequence batcher added its control
  // and state inputs (-1: not added yet): a request that runs again drops them first.
  int32_t sequence_inputs_from = -1;
  // The model's spec, for output filtering in Send (shared: a decoupled model's
  // sender may outlive the model).
  std::shared_ptr<const ModelSpec> spec;
  // Where Send records per-response statistics (Triton's `response_stats`); set by
  // the scheduler when a decoupled model's request is dispatched. Null (every other
  // request): Send records nothing and costs nothing extra.
  std::shared_ptr<ModelStats> response_stats;
  // A response cache miss (set by Model::Enqueue): BatchRunner caches this
  // request's successful response under `cache_key` and records the miss, whose
  // lookup took `cache_lookup_ns`. Null for every other request.
  std::shared_ptr<ResponseCache> response_cache;
  uint64_t cache_key = 0;
  uint64_t cache_lookup_ns = 0;
  // The compute durations of this request's execution (its batch's), stored when
  // the execution ends (for a decoupled model possibly after its FINAL, hence
  // atomic): an ensemble sums its steps' into its own statistics, as Triton does.
  std::atomic<uint64_t> compute_input_ns{0};
  std::atomic<uint64_t> compute_infer_ns{0};
  std::atomic<uint64_t> compute_output_ns{0};

 private:
  // send_state_: kClosedBit once FINAL is sent; the rest counts non-final Sends in
  // progress (in units of kSendingUnit), which a FINAL Send waits out.
  static constexpr uint32_t kClosedBit = 1u;
  static constexpr uint32_t kSendingUnit = 2u;

  void Deliver(std::unique_ptr<InferenceResponse> response, uint32_t flags);
  // Per-response statistics: claims the next response index and its start time
  // (the previous response's end, else dispatch_ns).
  void BeginResponseStat(uint64_t* index, uint64_t* start_ns);

  ResponseFn on_response_;
  ResponseStreamFn on_stream_;
  bool streams_ = false;
  std::atomic<uint32_t> send_state_{0};
  // Admission holds (HoldInflight): written before the request is enqueued, given
  // back once, by whoever flips `holding_`.
  std::atomic<bool> holding_{false};
  std::shared_ptr<InflightCounter> admission_;
  std::atomic<bool> cancelled_{false};
  std::atomic<uint64_t> response_index_{0};
  std::atomic<uint64_t> last_response_end_ns_{0};
};

using RequestPtr = std::shared_ptr<InferenceRequest>;

}  // namespace tritonx
