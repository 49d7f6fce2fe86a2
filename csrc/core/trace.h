// Request tracing (Triton's trace extension): which requests are sampled, the
// timestamps and tensors recorded for them, and the queue of finished traces that
// the server's Python side writes to a file or exports as OpenTelemetry spans.
//
// Cost when tracing is off: Model::Enqueue tests one atomic flag (Tracer::active);
// every other hook tests the request's null `trace` pointer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tensor.h"

namespace tritonx {

// Trace level bits, as Triton's TRITONSERVER_InferenceTraceLevel.
constexpr uint32_t kTraceLevelTimestamps = 0x4;
constexpr uint32_t kTraceLevelTensors = 0x8;

// Triton's activity names.
namespace trace_activity {
constexpr const char* kRequestStart = "REQUEST_START";
constexpr const char* kQueueStart = "QUEUE_START";
constexpr const char* kComputeStart = "COMPUTE_START";
constexpr const char* kComputeInputEnd = "COMPUTE_INPUT_END";
constexpr const char* kComputeOutputStart = "COMPUTE_OUTPUT_START";
constexpr const char* kComputeEnd = "COMPUTE_END";
constexpr const char* kRequestEnd = "REQUEST_END";
constexpr const char* kInferResponseComplete = "INFER_RESPONSE_COMPLETE";
constexpr const char* kHttpRecvStart = "HTTP_RECV_START";
constexpr const char* kHttpRecvEnd = "HTTP_RECV_END";
constexpr const char* kHttpSendStart = "HTTP_SEND_START";
constexpr const char* kHttpSendEnd = "HTTP_SEND_END";
constexpr const char* kGrpcWaitReadStart = "GRPC_WAITREAD_START";
constexpr const char* kGrpcWaitReadEnd = "GRPC_WAITREAD_END";
constexpr const char* kGrpcSendStart = "GRPC_SEND_START";
constexpr const char* kGrpcSendEnd = "GRPC_SEND_END";
constexpr const char* kTensorQueueInput = "TENSOR_QUEUE_INPUT";
constexpr const char* kTensorBackendOutput = "TENSOR_BACKEND_OUTPUT";
}  // namespace trace_activity

// One version of a trace setting (the global one or a model's). Settings are
// replaced, never changed, when a client updates them: traces sampled under the old
// version keep it. Thread safety: Sample and the counters are thread safe; the rest
// is immutable. Ownership: shared by the Tracer and the traces sampled under it.
class TraceSetting {
 public:
  // `valid`: Triton's validity (level on, rate > 0, a file in triton mode); an
  // invalid setting samples nothing.
  // `propagate`: OpenTelemetry mode, where a request that arrives with a trace
  // context is traced whatever the rate and count (Triton 24.01+).
  TraceSetting(uint64_t id, uint32_t level, uint32_t rate, int32_t count, bool valid,
               bool propagate = false);

  // Triton's rule: every rate-th request is traced while count is not 0 (-1: no
  // limit); each traced request takes one from count. A `forced` request (it came
  // with a trace context) is traced anyway, and still counts towards both.
  bool Sample(bool forced);
  int32_t count() const;
  uint64_t sampled() const;  // requests seen (traced or not)

  const uint64_t id;
  const uint32_t level;
  const bool propagate;

 private:
  mutable std::mutex mu_;
  const uint32_t rate_;
  const bool valid_;
  int32_t count_;
  uint64_t sample_ = 0;
};

// A finished trace of one request (one model): Triton's file entries.
struct TraceRecord {
  struct Stamp {
    const char* name;  // a trace_activity name
    uint64_t ns;
  };
  struct TensorEntry {
    const char* activity;
    std::string name, data, shape, dtype;
  };
  uint64_t id = 0;
  uint64_t parent_id = 0;  // 0: a root trace
  std::string model_name;
  int64_t model_version = 0;
  std::string request_id;
  // OpenTelemetry mode: the id of this request's span, chosen when it was sampled so
  // that the model can be told its context while it runs (0 in Triton mode).
  uint64_t span_id = 0;
  std::vector<Stamp> stamps;
  std::vector<TensorEntry> tensors;
};

// What the Python side drains: a root trace with its children (ensemble steps).
struct CompletedTrace {
  uint64_t setting_id = 0;
  std::string traceparent;  // W3C context the request arrived with ("" if none)
  // Its tracestate as the exporter will read it: the header with every member
  // checked and blanks dropped, "" when it is not valid or the traceparent is not.
  std::string tracestate;
  // OpenTelemetry mode: the trace id (32 hex digits: the traceparent's when it is
  // valid) and the root InferRequest span's id; "" and 0 in Triton mode.
  std::string otel_trace_id;
  uint64_t root_span_id = 0;
  std::vector<TraceRecord> records;  // the root first, then the children
};

class Tracer;

// Whether a traceparent header is valid by the OpenTelemetry SDK's rule (the
// exporter's), so that the request continues its caller's trace.
bool ValidTraceparent(std::string_view header);

// The trace of one request. Root traces are sampled by the Tracer; an ensemble's
// step gets a child (SpawnChild). A child holds its root, so the root is finished
// (and queued on the Tracer) when the last of its traces is released.
// Thread safety: Record* are thread safe (a request's stamps come from the frontend,
// the scheduler and the executing worker). Ownership: held by the InferenceRequest
// (`trace`) and, for a while, by the frontend that sends the response.
class RequestTrace : public std::enable_shared_from_this<RequestTrace> {
 public:
  RequestTrace(std::shared_ptr<Tracer> tracer, std::shared_ptr<TraceSetting> setting,
               uint64_t id, uint64_t parent_id, std::shared_ptr<RequestTrace> root);
  ~RequestTrace();
  RequestTrace(const RequestTrace&) = delete;
  RequestTrace& operator=(const RequestTrace&) = delete;

  std::shared_ptr<RequestTrace> SpawnChild();
  void SetModel(const std::string& name, int64_t version,
                const std::string& request_id);
  // The W3C headers the request arrived with (traceparent, tracestate).
  void SetParentContext(std::string traceparent, std::string_view tracestate);
  void Record(const char* activity, uint64_t ns);
  void Record(const char* activity);  // now
  bool tensors() const { return (setting_->level & kTraceLevelTensors) != 0; }
  bool timestamps() const { return (setting_->level & kTraceLevelTimestamps) != 0; }
  // INFER_RESPONSE_COMPLETE, once: at the first response of a root trace (Triton's
  // frontends record it when the first response reaches them; children have none).
  void RecordFirstResponse(uint64_t ns);
  void RecordTensor(const char* activity, const Tensor& tensor);
  uint64_t id() const { return record_.id; }
  // OpenTelemetry mode: the W3C context of this request's span as Triton hands it to
  // a backend, {"traceparent":"00-<trace id>-<span id>-01"} with "tracestate" added
  // when the caller's context carried one; "" in Triton mode.
  std::string OtelContext();

 private:
  void Adopt(TraceRecord record);  // a child's finished record (root only)

  const std::shared_ptr<Tracer> tracer_;
  const std::shared_ptr<TraceSetting> setting_;
  const std::shared_ptr<RequestTrace> root_;  // null for the root itself
  // The root's trace id and tracestate (locks the root).
  std::pair<std::string, std::string> OtelTrace();

  std::mutex mu_;
  TraceRecord record_;
  std::string traceparent_;
  std::string tracestate_;     // root only: as CompletedTrace::tracestate
  std::string otel_trace_id_;  // root only, OpenTelemetry mode
  uint64_t root_span_id_ = 0;  // root only, OpenTelemetry mode
  bool responded_ = false;
  std::vector<TraceRecord> children_;  // root only
};

// The sampler and the queue of finished traces; one per server (ServerContext).
// Thread safety: every method is thread safe. Ownership: shared by the context and
// every trace in flight.
class Tracer : public std::enable_shared_from_this<Tracer> {
 public:
  // One relaxed load: the only cost of tracing on requests while it is off.
  bool active() const { return active_.load(std::memory_order_relaxed); }

  // Installs a new version of the global setting (`model` empty) or a model's; a
  // null setting removes the model's own (it then follows the global one).
  void Install(const std::string& model, std::shared_ptr<TraceSetting> setting);
  uint64_t NextSettingId() { return next_setting_id_.fetch_add(1); }
  uint64_t NextTraceId() { return next_trace_id_.fetch_add(1); }

  // The trace for a new request of `model`, or null when it is not sampled.
  // `has_context`: the request carries a valid W3C traceparent (ValidTraceparent);
  // in OpenTelemetry mode it is then traced whatever the rate, as in Triton.
  std::shared_ptr<RequestTrace> Sample(const std::string& model, bool has_context);

  // A trace in flight by id (null once finished): a BLS call from a stub process
  // names its parent so. Traces are listed only while they live.
  std::shared_ptr<RequestTrace> Find(uint64_t id);
  void Track(const std::shared_ptr<RequestTrace>& trace);  // by RequestTrace
  void Forget(uint64_t id);                                // by ~RequestTrace

  // Finished traces, oldest first; waits up to `timeout_ms` for one. Also returns
  // (possibly empty) once Close was called.
  std::vector<CompletedTrace> Drain(int timeout_ms);
  void Close();
  void Complete(CompletedTrace trace);  // by RequestTrace

 private:
  void UpdateActive();  // with mu_ held

  std::mutex mu_;
  std::condition_variable ready_;
  std::shared_ptr<TraceSetting> global_;
  std::unordered_map<std::string, std::shared_ptr<TraceSetting>> models_;
  std::deque<CompletedTrace> done_;
  std::unordered_map<uint64_t, std::weak_ptr<RequestTrace>> live_;
  bool closed_ = false;
  std::atomic<bool> active_{false};
  std::atomic<uint64_t> next_trace_id_{1};
  std::atomic<uint64_t> next_setting_id_{1};
};

}  // namespace tritonx
