#include "stub_executor.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

#include "logging.h"
#include "stub_wire.h"
#include "tensor_arena.h"

namespace tritonx {

StubExecutor::StubExecutor(std::string instance_name, int64_t timeout_ns,
                           size_t shm_bytes, size_t growth, bool decoupled)
    : name_(std::move(instance_name)),
      timeout_ns_(timeout_ns > 0 ? timeout_ns : -1),
      shm_bytes_(shm_bytes),
      growth_(growth),
      decoupled_(decoupled) {}

StubExecutor::~StubExecutor() = default;

Status StubExecutor::Unhealthy() const {
  return Status(StatusCode::kInternal, "Stub process '" + name_ + "' is not healthy.");
}

int StubExecutor::Prepare() {
  std::lock_guard<std::mutex> lock(mu_);
  attached_ = false;
  ring_ = stub::RingServer::Create(shm_bytes_, growth_);
  return ring_ ? ring_->fd() : -1;
}

bool StubExecutor::Attach(int stub_fd, int pid, int stream_fd, int stream_socket) {
  std::lock_guard<std::mutex> lock(mu_);
  // The last stub's receiver has seen its socket end (or is told to now).
  receiver_.reset();
  std::unique_ptr<stub::StreamReader> stream;
  if (stream_fd >= 0) stream = stub::StreamReader::Adopt(stream_fd);
  if (stream && stream_socket >= 0) {
    receiver_ = std::make_unique<stub::StreamReceiver>(
        stream_socket, std::move(stream),
        [this](uint64_t key, bool final, std::unique_ptr<InferenceResponse> response) {
          Status status = SendResponse(key, std::move(response), final);
          // NOT_FOUND: the request was already answered (the stub died, say).
          if (!status.ok() && status.code() != StatusCode::kNotFound) {
            Log(LogLevel::kError, "sender's response dropped: " + status.message());
          }
        });
  } else if (stream_socket >= 0) {
    close(stream_socket);
  }
  // (A non-decoupled stub without a stream only answers through its ring replies.)
  attached_ = ring_ != nullptr && ring_->AttachStub(stub_fd, pid) &&
              (!decoupled_ || receiver_ != nullptr);
  abandoned_.store(false);
  failure_.clear();
  return attached_;
}

void StubExecutor::Detach() {
  abandoned_.store(true);
  std::lock_guard<std::mutex> lock(mu_);
  attached_ = false;
}

bool StubExecutor::PostFinalize() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!attached_) return false;
  ring_->Post(stub::RequestKind::kFinalize, 0, 0);
  attached_ = false;  // nothing runs after finalize
  return true;
}

bool StubExecutor::IsCancelled(size_t index, uint64_t key) {
  std::lock_guard<std::mutex> lock(requests_mu_);
  if (auto it = open_.find(key); it != open_.end()) return it->second->IsCancelled();
  return inflight_ != nullptr && index < inflight_->size() &&
         key == inflight_first_key_ + index && (*inflight_)[index]->IsCancelled();
}

Status StubExecutor::SendResponse(uint64_t key,
                                  std::unique_ptr<InferenceResponse> response,
                                  bool final) {
  RequestPtr request;
  {
    std::lock_guard<std::mutex> lock(requests_mu_);
    auto it = open_.find(key);
    if (it == open_.end()) {
      return Status(StatusCode::kNotFound, "the request is no longer open");
    }
    request = final ? std::move(it->second) : it->second;
    if (final) open_.erase(it);
  }
  // Outside the lock: delivery runs the frontend's callback.
  return request->Send(std::move(response), final ? kResponseFlagFinal : 0);
}

void StubExecutor::FailPending() {
  {
    // The stub has ended (the callers see to it), but what it sent before may still
    // be on its way: the receiver delivers it, up to the socket's end, first.
    std::lock_guard<std::mutex> lock(mu_);
    if (receiver_) receiver_->WaitForEnd(std::chrono::seconds(1));
  }
  std::unordered_map<uint64_t, RequestPtr> open;
  {
    std::lock_guard<std::mutex> lock(requests_mu_);
    open.swap(open_);
  }
  for (auto& [key, request] : open) request->RespondError(Unhealthy());
}

std::string StubExecutor::TakeFailure() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(failure_, std::string());
}

void StubExecutor::Execute(Batch& batch) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t first_key = next_key_;
  next_key_ += batch.requests.size();
  {
    std::lock_guard<std::mutex> requests(requests_mu_);
    inflight_ = &batch.requests;  // until this Execute returns
    inflight_first_key_ = first_key;
    // Open before the stub sees them: their senders may answer at once.
    for (size_t i = 0; i < batch.requests.size(); ++i)
      open_.emplace(first_key + i, batch.requests[i]);
  }
  Status status = RunLocked(batch, first_key);
  if (!status.ok()) batch.batch_status = std::move(status);
  std::lock_guard<std::mutex> requests(requests_mu_);
  inflight_ = nullptr;
  if (decoupled_ && batch.batch_status.ok()) return;
  // The batch runner answers a failed execute's requests with its error, and a
  // non-decoupled execute's with the reply, except those left to their senders
  // (which only a decoupled stub's failed reply marks); a response the stub sent
  // before that finds its request closed either way.
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    const bool left_to_sender =
        (batch.batch_status.ok() || decoupled_) &&
        batch.requests[i]->answered_by_sender.load(std::memory_order_acquire);
    if (!left_to_sender) open_.erase(first_key + i);
  }
}

Status StubExecutor::RunLocked(Batch& batch, uint64_t first_key) {
  if (!attached_) return Unhealthy();
  message_.Clear();
  const size_t tensor_bytes = stub::WriteRequests(message_, batch.requests, first_key);
  const std::string& message = message_.bytes();
  char* data = ring_->Reserve(tensor_bytes + message.size());
  if (data == nullptr) {
    return Status(StatusCode::kInternal,
                  "Failed to allocate " + std::to_string(tensor_bytes) +
                      " bytes of shared memory for the stub of '" + name_ + "'");
  }
  size_t offset = 0;
  for (const RequestPtr& request : batch.requests) {
    for (const Tensor& input : request->inputs) {
      if (input.byte_size > 0) std::memcpy(data + offset, input.data, input.byte_size);
      offset += stub::Padded(input.byte_size);
    }
  }
  std::memcpy(data + tensor_bytes, message.data(), message.size());
  batch.compute_input_end_ns = NowNs();
  ring_->Post(stub::RequestKind::kExecute, tensor_bytes, message.size());
  // Spin for the reply only on a caller's own thread (inline dispatch: gRPC at low
  // concurrency), whose next step is sending that reply, and only while no other
  // request is in flight in the server. A worker thread's reply goes to a frontend
  // thread anyway, and a spin takes a core from the threads that must run next
  // (measured on 2 cores, process mode, identity model: without the spin gRPC c4
  // +13-24 %, HTTP c1 +13-16 %; gRPC c1, which runs inline, -13 %).
  const stub::WaitResult result = ring_->WaitReply(
      timeout_ns_, &abandoned_, /*spin=*/batch.inline_run,
      batch.requests.empty() ? nullptr : batch.requests.front()->ServerInflight());
  batch.compute_infer_end_ns = NowNs();
  if (result == stub::WaitResult::kTimeout) {
    ring_->KillPeer();
    attached_ = false;
    failure_ = "execute ran past " + std::to_string(timeout_ns_ / 1e9) + " s";
    return Unhealthy();
  }
  if (result == stub::WaitResult::kPeerGone) {
    attached_ = false;
    failure_ = "the process ended";
    return Unhealthy();
  }
  return BuildResponses(batch, *ring_);
}

Status StubExecutor::BuildResponses(Batch& batch, stub::RingServer& ring) {
  stub::WireReply reply;
  if (!stub::ReadReply(ring.Reply(), &reply)) {
    return Status(StatusCode::kInternal,
                  "malformed reply from stub process '" + name_ + "'");
  }
  const size_t count = batch.requests.size();
  if (!reply.batch_status.ok()) {
    // A decoupled stub already ended these on its stream, maybe still on the way:
    // the core counts them failed but leaves them open for that last response.
    for (uint32_t index : reply.answered_by_sender) {
      if (!decoupled_ || index >= count) {
        return Status(StatusCode::kInternal,
                      "stub process '" + name_ + "' ended an unknown request");
      }
      batch.requests[index]->answered_by_sender.store(true, std::memory_order_release);
    }
    return reply.batch_status;
  }
  for (uint32_t index : reply.rescheduled) {
    if (index >= count) {
      return Status(StatusCode::kInternal,
                    "stub process '" + name_ + "' rescheduled an unknown request");
    }
    batch.requests[index]->reschedule.store(true, std::memory_order_release);
  }
  for (uint32_t index : reply.answered_by_sender) {
    if (decoupled_ || index >= count) {
      return Status(
          StatusCode::kInternal,
          "stub process '" + name_ + "' left an unknown request to its sender");
    }
    batch.requests[index]->answered_by_sender.store(true, std::memory_order_release);
  }
  // A decoupled model answered (or will answer) through its senders.
  if (decoupled_) return Status::Ok();
  if (reply.responses.size() != count) {
    return Status(StatusCode::kInternal,
                  "backend returned " + std::to_string(reply.responses.size()) +
                      " responses for " + std::to_string(count) + " requests");
  }
  const stub::SharedRegion& region = *ring.stub_region();
  const uint64_t base = ring.reply_base();  // <= region.size(), checked by WaitReply
  const size_t avail = region.size() - base;
  // Outputs are read in place from the stub's region while the lease is held (the
  // common case); past the lease cap they are copied into arena buffers.
  std::shared_ptr<const void> lease;
  for (const stub::WireResponse& wire : reply.responses) {
    if (!wire.outputs.empty()) {
      lease = ring.LeaseReply();
      break;
    }
  }
  batch.responses.resize(count);
  for (size_t i = 0; i < count; ++i) {
    stub::WireResponse& wire = reply.responses[i];
    auto response = std::make_unique<InferenceResponse>();
    response->status = std::move(wire.status);
    response->parameters = std::move(wire.parameters);
    for (const stub::WireTensor& out : wire.outputs) {
      Tensor tensor;
      if (!stub::TensorFromWire(out, avail, &tensor)) {
        response->status = Status(
            StatusCode::kInternal,
            "stub process '" + name_ + "' sent a bad output '" + tensor.name + "'");
        response->outputs.clear();
        break;
      }
      const char* bytes = region.data() + base + out.offset;
      if (lease) {
        tensor.data = bytes;
        tensor.owner = lease;
      } else {
        ArenaBuffer buffer =
            TensorArena::Global()->Allocate(std::max<size_t>(out.bytes, 1));
        if (!buffer) return Status(StatusCode::kInternal, "out of memory");
        if (out.bytes > 0) std::memcpy(buffer->data(), bytes, out.bytes);
        tensor.data = buffer->data();
        tensor.owner = std::move(buffer);
      }
      response->outputs.push_back(std::move(tensor));
    }
    batch.responses[i] = std::move(response);
  }
  return Status::Ok();
}

}  // namespace tritonx
