#include "infer_request.h"

#include <chrono>

#include "inflight_limit.h"

namespace tritonx {
namespace {
std::atomic<uint64_t> next_uid{1};
}  // namespace

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

InferenceRequest::InferenceRequest() : uid(next_uid.fetch_add(1)) {}

InferenceRequest::~InferenceRequest() { ReleaseInflightSlot(); }

void InferenceRequest::ReleaseInflightSlot() {
  InflightLimit* limit = inflight_slot_.exchange(nullptr, std::memory_order_acq_rel);
  if (limit != nullptr) limit->Release();
}

bool InferenceRequest::Respond(std::unique_ptr<InferenceResponse> response) {
  if (responded_.exchange(true, std::memory_order_acq_rel)) return false;
  // Answered: the slot is free before the callback runs, so a client that sends its
  // next request from the callback is not refused for its own finished one.
  ReleaseInflightSlot();
  if (response->model_name.empty()) response->model_name = model_name;
  if (response->model_version == 0) response->model_version = model_version;
  if (response->id.empty()) response->id = id;
  // Move the callback out so that whatever it captured is released as soon as it ran,
  // not when the request itself dies.
  ResponseFn fn = std::move(on_response_);
  if (fn) fn(std::move(response));
  return true;
}

bool InferenceRequest::RespondError(const Status& status) {
  auto response = std::make_unique<InferenceResponse>();
  response->status = status;
  return Respond(std::move(response));
}

}  // namespace tritonx
