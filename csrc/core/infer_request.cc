#include "infer_request.h"

#include <chrono>
#include <thread>

#include "inflight_limit.h"
#include "model_stats.h"
#include "response_outputs.h"
#include "trace.h"

namespace tritonx {
namespace {
std::atomic<uint64_t> next_uid{1};

ResponseOutcome OutcomeOf(const InferenceResponse* response) {
  if (response == nullptr) return ResponseOutcome::kEmpty;
  if (response->status.ok()) return ResponseOutcome::kSuccess;
  if (response->status.code() == StatusCode::kCancelled) {
    return ResponseOutcome::kCancel;
  }
  return ResponseOutcome::kFail;
}
}  // namespace

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

InferenceRequest::InferenceRequest() : uid(next_uid.fetch_add(1)) {}

InferenceRequest::~InferenceRequest() { ReleaseInflight(); }

void InferenceRequest::HoldInflight(std::shared_ptr<InflightCounter> admission) {
  admission_ = std::move(admission);
  holding_.store(true, std::memory_order_release);
}

const std::atomic<int64_t>* InferenceRequest::ServerInflight() const {
  return admission_ ? &admission_->server().inflight_word() : nullptr;
}

void InferenceRequest::ReleaseInflight() {
  if (!holding_.exchange(false, std::memory_order_acq_rel)) return;
  if (admission_) admission_->Release();
}

Status InferenceRequest::Send(std::unique_ptr<InferenceResponse> response,
                              uint32_t flags) {
  if ((flags & kResponseFlagFinal) == 0) {
    if (!streams_) {
      return Status(StatusCode::kUnsupported,
                    "this request takes a single response (the model is not "
                    "decoupled)");
    }
    if (!response) {
      return Status(StatusCode::kInvalidArg, "a non-final response must not be empty");
    }
    const uint32_t before =
        send_state_.fetch_add(kSendingUnit, std::memory_order_acq_rel);
    if (before & kClosedBit) {
      send_state_.fetch_sub(kSendingUnit, std::memory_order_acq_rel);
      return Status(StatusCode::kInvalidArg, "response sender is closed");
    }
    if (RequestTrace* t = trace.get()) t->RecordFirstResponse(NowNs());
    if (ModelStats* stats = response_stats.get()) {
      uint64_t index = 0, start = 0;
      BeginResponseStat(&index, &start);
      const uint64_t output_start = NowNs();
      const ResponseOutcome outcome = OutcomeOf(response.get());
      Deliver(std::move(response), flags);
      const uint64_t end = NowNs();
      last_response_end_ns_.store(end, std::memory_order_release);
      stats->RecordResponse(index, outcome, start, output_start, end);
    } else {
      Deliver(std::move(response), flags);
    }
    // Recorded before this unit is given back: a FINAL Send waits for it, so the
    // request is alive and the statistics are in before the stream ends.
    send_state_.fetch_sub(kSendingUnit, std::memory_order_acq_rel);
    return Status::Ok();
  }
  // FINAL: close, after any non-final Send still delivering (one compare-and-swap on
  // the usual one-response path).
  uint32_t state = send_state_.load(std::memory_order_acquire);
  while (true) {
    if (state & kClosedBit) {
      return Status(StatusCode::kInvalidArg, "response sender is closed");
    }
    if (state != 0) {
      std::this_thread::yield();
      state = send_state_.load(std::memory_order_acquire);
      continue;
    }
    if (send_state_.compare_exchange_weak(state, kClosedBit,
                                          std::memory_order_acq_rel)) {
      break;
    }
  }
  if (RequestTrace* t = trace.get()) {
    const uint64_t now = NowNs();
    t->Record(trace_activity::kRequestEnd, now);
    t->RecordFirstResponse(now);
  }
  // Answered: the slots are free before the callback runs, so a client that sends its
  // next request from the callback is not refused for its own finished one.
  ReleaseInflight();
  if (!response_stats) {
    Deliver(std::move(response), flags);
    return Status::Ok();
  }
  // The callback may drop the last reference to this request: what the record needs
  // after Deliver is copied out first.
  std::shared_ptr<ModelStats> stats = response_stats;
  uint64_t index = 0, start = 0;
  BeginResponseStat(&index, &start);
  const uint64_t output_start = NowNs();
  const ResponseOutcome outcome = OutcomeOf(response.get());
  Deliver(std::move(response), flags);
  stats->RecordResponse(index, outcome, start, output_start, NowNs());
  return Status::Ok();
}

void InferenceRequest::BeginResponseStat(uint64_t* index, uint64_t* start_ns) {
  *index = response_index_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t last = last_response_end_ns_.load(std::memory_order_acquire);
  *start_ns = last != 0 ? last : dispatch_ns;
}

void InferenceRequest::Deliver(std::unique_ptr<InferenceResponse> response,
                               uint32_t flags) {
  if (response) {
    if (response->model_name.empty()) response->model_name = model_name;
    if (response->model_version == 0) response->model_version = model_version;
    if (response->id.empty()) response->id = id;
    if (!response->status.ok()) {
      response->outputs.clear();
    } else {
      Status status =
          spec ? ApplyOutputSpec(*spec, *this, response.get()) : Status::Ok();
      if (status.ok()) status = PlaceOutputs(*this, response.get());
      if (!status.ok()) {
        response->status = std::move(status);
        response->outputs.clear();
      }
    }
    // TENSORS level: each response's outputs as sent (every response of a
    // decoupled model), as Triton records them when a response is sent.
    if (trace && trace->tensors() && response->status.ok()) {
      for (const Tensor& output : response->outputs) {
        trace->RecordTensor(trace_activity::kTensorBackendOutput, output);
      }
    }
  }
  const bool final = (flags & kResponseFlagFinal) != 0;
  if (on_stream_) {
    if (!final) {
      on_stream_(std::move(response), flags);
      return;
    }
    // The last call: move the callback out, so that what it captured is released as
    // soon as it ran (the callback may even drop the last reference to this request).
    ResponseStreamFn fn = std::move(on_stream_);
    fn(std::move(response), flags);
    return;
  }
  ResponseFn fn = std::move(on_response_);
  if (!fn) return;
  if (!response) {
    // A final flag without data on a one-response consumer: the model sent nothing.
    response = std::make_unique<InferenceResponse>();
    response->model_name = model_name;
    response->model_version = model_version;
    response->id = id;
    response->status = Status(StatusCode::kInternal,
                              "the model sent no response for request '" + id + "'");
  }
  fn(std::move(response));
}

bool InferenceRequest::Respond(std::unique_ptr<InferenceResponse> response) {
  return Send(std::move(response), kResponseFlagFinal).ok();
}

bool InferenceRequest::RespondError(const Status& status) {
  auto response = std::make_unique<InferenceResponse>();
  response->status = status;
  return Respond(std::move(response));
}

}  // namespace tritonx
