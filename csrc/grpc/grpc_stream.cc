// ModelStreamInfer: the bidirectional inference stream (decoupled models, and
// many requests on one call). Part of GrpcServer::Impl (grpc_server_impl.h).
#include <algorithm>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/logging.h"
#include "core/trace.h"
#include "grpc_server_impl.h"
#include "infer_codec.h"
#include "received_request.h"

namespace tritonx {
namespace {

// A stream whose unwritten responses reached this many bytes returns the freed
// memory to the OS when it ends (TrimHeapInBackground).
constexpr size_t kTrimAfterQueuedBytes = size_t{64} << 20;
using inference::ModelInferRequest;
using inference::ModelInferResponse;
using inference::ModelStreamInferResponse;
}  // namespace

// ---------------------------------------------------------------------------
// ModelStreamInfer: every request read is enqueued at once. As in Triton, the
// answers of requests to non-decoupled models (and the errors of requests whose
// model is unknown) are written in the order the requests came, a quick request
// waiting for a slow one before it; a decoupled model's responses (0..N, then
// FINAL) are written as they come, in send order, without waiting. Each carries
// `triton_final_response`, and a FINAL without data is written only when the request
// set `triton_enable_empty_final_response`. grpc allows one outstanding write per
// stream, so responses wait in a queue for their turn. Errors travel as
// `error_message` without closing the stream. The stream finishes once the client
// has half-closed and every request has sent FINAL and been written.
//
// Triton's `triton_grpc_error: true` header (read when the stream starts) changes
// that for errors a request's *responses* carry (its execution failed, or its
// response could not be built): the first one ends the stream with its gRPC status.
// Responses queued before it are still written; every other request in flight is
// cancelled, nothing more is read, and later responses are dropped. An error found
// before a request runs (unknown model, bad input) still travels as
// `error_message`, as in Triton 2.51. The status goes out once nothing is being
// written and no request is in flight, since a core callback must never find the
// reactor gone. A traced
// request gets Triton's stream stamps: GRPC_WAITREAD_START when the read that
// brought it was started, GRPC_WAITREAD_END once read, and GRPC_SEND_START/END
// around the write of each of its responses (the queued write holds the trace, so
// the trace completes after its last write). Thread safety:
// reactions come from grpc threads and responses from core threads; mu_ guards the
// shared state. The reactor deletes itself in OnDone. Messages travel as raw
// buffers: a request's bytes go once parsed, and a response's large outputs are
// sent from the tensors themselves (infer_codec). A message that does not parse
// ends the reading, as in Triton 2.51 (the stream then finishes with OK once the
// requests before it are answered). When the server stops (CloseStreams), a
// stream takes no more requests and ends with UNAVAILABLE once those in flight
// are answered and written, an idle one at once: a client that keeps a stream
// open does not hold the shutdown for the whole grace period (Triton 2.51 waits
// for the client to close it, past its exit timeout). A client that stops reading
// while a model goes on answering would otherwise grow the queue without bound (in
// Triton too, until the server runs out of memory): once what waits behind the
// write in progress would pass --grpc-max-stream-backlog-bytes (default 1 GiB), the
// stream is cancelled with its requests in flight, and a warning names the peer.

class GrpcServer::Impl::StreamReactor
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamReactor(Impl* impl, grpc::CallbackServerContext* ctx) : impl_(impl), ctx_(ctx) {
    // A restricted stream is refused before anything is read, as Triton does.
    grpc::Status admitted = impl_->policy_->Admit(grpcfe::ProtocolGroup::kInference,
                                                  ctx->client_metadata());
    if (!admitted.ok()) {
      finished_ = true;
      Finish(admitted);
      return;
    }
    // Triton compresses a stream's responses at --grpc-infer-response-compression-level
    // too, not only unary ones.
    if (impl_->compression_ != GRPC_COMPRESS_LEVEL_NONE) {
      ctx->set_compression_level(impl_->compression_);
    }
    const auto& metadata = ctx->client_metadata();
    auto mode = metadata.find("triton_grpc_error");
    errors_end_stream_ = mode != metadata.end() && mode->second == "true";
    bool closing;
    {
      std::lock_guard<std::mutex> lock(impl_->streams_mu_);
      closing = impl_->streams_closing_;
      impl_->streams_.insert(this);
    }
    if (closing) {  // started as the server stops
      finished_ = true;
      Finish(ClosingStatus());
      return;
    }
    NextRead();
  }

  // CloseStreams, under the server's streams lock: no more requests; the stream
  // ends once those in flight are answered and written. True when it is idle now:
  // the caller then calls Finish(ClosingStatus()) past that lock (with finished_
  // set here, nothing else finishes it, so it cannot be gone by then).
  bool BeginClosing() {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
    if (finished_ || writing_ || !writes_.empty() || outstanding_ != 0 ||
        processing_ != 0) {
      return false;
    }
    finished_ = true;
    return true;
  }

  static grpc::Status ClosingStatus() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "Server is shutting down");
  }

  void OnReadDone(bool ok) override {
    auto message = std::make_shared<grpcfe::ReceivedInferRequest>();
    if (ok) ok = grpcfe::ParseReceivedInferRequest(&reading_, message.get());
    if (!ok) {
      // Half-close, cancellation or a broken stream: no more requests.
      Action action;
      {
        std::lock_guard<std::mutex> lock(mu_);
        reads_done_ = true;
        action = NextActionLocked();
      }
      Act(action);
      return;
    }
    const uint64_t read_started_ns = read_started_ns_;
    bool taken = true;
    Action action;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (error_status_ || closing_) {
        // The stream is ending (an error, or the server stops): no more requests.
        // This one was not taken; the status the stream ends with says why.
        // Nothing more is read, so an idle stream finishes here.
        taken = false;
        action = NextActionLocked();
      } else {
        ++outstanding_;
        ++processing_;  // the stream cannot finish under us until the next read is on
      }
    }
    if (!taken) return Act(action);
    // The request is enqueued before the next one is read, as in Triton: requests
    // reach their models in the order they came (a sequence's steps, above all),
    // and keys follow that order. (gRPC goes on receiving meanwhile.)
    Process(std::move(message), read_started_ns);
    NextRead();
    {
      std::lock_guard<std::mutex> lock(mu_);
      --processing_;
      action = NextActionLocked();
    }
    Act(action);  // the last use of `this`: it may finish the stream
  }

  void OnWriteDone(bool ok) override {
    Action action;
    std::shared_ptr<RequestTrace> written;
    {
      std::lock_guard<std::mutex> lock(mu_);
      written = std::move(writes_.front().trace);
      queued_bytes_ -= writes_.front().response->Length();
      writes_.pop_front();
      writing_ = false;
      if (!ok) {
        // The client is gone; nothing more can be delivered.
        broken_ = true;
        writes_.clear();
        queued_bytes_ = 0;
      }
      action = NextActionLocked();
    }
    if (written) written->Record(trace_activity::kGrpcSendEnd);
    written.reset();  // may complete the trace: before Act, which may end us
    Act(action);
  }

  void OnCancel() override {
    std::vector<std::pair<std::shared_ptr<Model>, RequestPtr>> inflight;
    {
      std::lock_guard<std::mutex> lock(mu_);
      broken_ = true;
      for (const auto& entry : inflight_) inflight.push_back(entry.second);
    }
    // Logged (verbose) in the words Triton's gRPC frontend uses for it.
    Log(LogLevel::kVerbose,
        "Cancellation notification received for ModelStreamInferHandler, " +
            std::to_string(inflight.size()) + " request(s) in flight");
    for (auto& [model, request] : inflight) model->Cancel(request);
  }

  void OnDone() override {
    const bool backlog_was_large = backlog_was_large_;
    {
      std::lock_guard<std::mutex> lock(impl_->streams_mu_);
      impl_->streams_.erase(this);
    }
    delete this;
    // A client that read slowly (or not at all) left responses queued here, freed
    // now in blocks glibc keeps mapped: without a trim the server's resident size
    // would stay at that peak for good.
    if (backlog_was_large) grpcfe::TrimHeapInBackground();
  }

 private:
  struct Action {
    const grpc::ByteBuffer* write = nullptr;
    RequestTrace* trace = nullptr;  // the written response's request, if traced
    bool finish = false;
    grpc::Status status;  // with `finish`
  };
  // A response waiting for its turn to be written.
  struct Write {
    std::unique_ptr<grpc::ByteBuffer> response;
    std::shared_ptr<RequestTrace> trace;
  };

  // With mu_ held: queues a response to write, counting the bytes waiting. False
  // when the response would take what waits behind the write in progress past
  // --grpc-max-stream-backlog-bytes: the client is not reading. The stream is then
  // broken (nothing more is delivered, what waits is dropped) and held open
  // (processing_) until the caller has cancelled it (CancelForBacklog).
  bool QueueWriteLocked(Write&& write) {
    const size_t length = write.response->Length();
    const size_t limit = impl_->options_.max_stream_backlog_bytes;
    if (limit != 0 && writing_ && !writes_.empty()) {
      const size_t waiting = queued_bytes_ - writes_.front().response->Length();
      if (waiting + length > limit) {
        error_status_ =
            grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                         "the client has not read " + std::to_string(waiting + length) +
                             " bytes of responses (--grpc-max-stream-backlog-bytes " +
                             std::to_string(limit) + "): stream cancelled");
        broken_ = true;
        writes_.resize(1);  // the write in progress ends with the cancellation
        queued_bytes_ = writes_.front().response->Length();
        backlog_was_large_ = true;
        ++processing_;
        return false;
      }
    }
    queued_bytes_ += length;
    backlog_was_large_ = backlog_was_large_ || queued_bytes_ >= kTrimAfterQueuedBytes;
    writes_.push_back(std::move(write));
    return true;
  }

  // After QueueWriteLocked refused a response, past the lock: logs why and cancels
  // the call (the write in progress and the pending read end; grpc then calls
  // OnCancel, which cancels the requests in flight), then lets the stream finish
  // once they are answered. `action` is the step decided with the refusal (at most
  // a write to start: processing_ keeps the stream from finishing). As in Complete,
  // `this` must not be used after the last Act.
  void CancelForBacklog(const Action& action) {
    if (action.write != nullptr) Act(action);
    std::string why;
    size_t inflight;
    {
      std::lock_guard<std::mutex> lock(mu_);
      why = error_status_->error_message();
      inflight = inflight_.size();
    }
    Log(LogLevel::kWarning, "ModelStreamInfer from " + ctx_->peer() + ": " + why +
                                ", with " + std::to_string(inflight) +
                                " request(s) in flight");
    ctx_->TryCancel();
    Action next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      --processing_;
      next = NextActionLocked();
    }
    if (next.write != nullptr || next.finish) Act(next);
  }

  void NextRead() {
    read_started_ns_ = NowNs();  // for a trace: GRPC_WAITREAD_START
    StartRead(&reading_);
  }

  // Decides the next step under the lock; the step itself runs unlocked since
  // grpc may run reactions inline.
  Action NextActionLocked() {
    Action action;
    if (!writing_ && !writes_.empty()) {
      writing_ = true;
      action.write = writes_.front().response.get();
      action.trace = writes_.front().trace.get();
    } else if (!writing_ && writes_.empty() && outstanding_ == 0 && processing_ == 0 &&
               !finished_ && (reads_done_ || error_status_ || closing_)) {
      // (After an error, or once closing, a read may still be pending: Finish ends
      // it.) A stream the client had half-closed ends with OK as usual.
      finished_ = true;
      action.finish = true;
      if (error_status_) {
        action.status = *error_status_;
      } else if (closing_ && !reads_done_) {
        action.status = ClosingStatus();
      }
    }
    return action;
  }

  void Act(const Action& action) {
    if (action.write != nullptr) {
      // The write holds the trace until OnWriteDone.
      if (action.trace != nullptr) action.trace->Record(trace_activity::kGrpcSendStart);
      StartWrite(action.write);
    } else if (action.finish) {
      Finish(action.status);
    }
  }

  // Queues `response` (may be null: nothing to write) for the request `key`; with
  // `final` the request is done. `trace`: the request's, if it is traced.
  void Complete(uint64_t key, std::unique_ptr<grpc::ByteBuffer> response,
                bool final = true, std::shared_ptr<RequestTrace> trace = nullptr) {
    Action action;
    bool over_backlog = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (final) {
        inflight_.erase(key);
        --outstanding_;
      }
      const bool deliver = !broken_ && !error_status_ && response;
      // (Keys grow with each request read, so ordered_ is sorted by key.)
      auto turn = std::lower_bound(
          ordered_.begin(), ordered_.end(), key,
          [](const Ordered& entry, uint64_t wanted) { return entry.key < wanted; });
      if (turn != ordered_.end() && turn->key == key) {
        // A request answered in request order: its one answer (a non-decoupled
        // model sends one, with FINAL) waits for its turn.
        turn->done = turn->done || final;
        if (deliver && !turn->write.response) {
          turn->write = {std::move(response), std::move(trace)};
        }
        while (!ordered_.empty() && ordered_.front().done) {
          Write& write = ordered_.front().write;
          if (write.response && !broken_ && !error_status_) {
            over_backlog = !QueueWriteLocked(std::move(write));
          }
          ordered_.pop_front();
        }
      } else if (deliver) {
        over_backlog = !QueueWriteLocked({std::move(response), std::move(trace)});
      }
      action = NextActionLocked();
    }
    if (over_backlog) return CancelForBacklog(action);
    // Past the lock another thread may finish the stream and delete `this`. With a
    // write or the finish to start, none can (writing_ or finished_ is set), and
    // Act is the last use of `this`; with nothing to do, not even a member call may
    // follow: the reactor may be gone already (a write completing on a grpc thread
    // finishes the stream once this request is no longer outstanding).
    if (action.write != nullptr || action.finish) Act(action);
  }

  // The model as a request named it (Triton echoes these strings, "" when absent).
  struct RequestedModel {
    std::string name;
    std::string version;
  };

  // Like Triton, the failed request's id rides along so clients can match it.
  // `from_response`: the error came with one of the request's responses (the
  // ones that end a stream in `triton_grpc_error` mode); such an error also names
  // the model as the request did and says whether it was the request's last.
  void CompleteWithError(uint64_t key, const Status& status, const std::string& id,
                         bool final = true,
                         std::shared_ptr<RequestTrace> trace = nullptr,
                         const RequestedModel* from_response = nullptr) {
    if (from_response != nullptr && errors_end_stream_)
      return EndWithError(key, status, final);
    ModelStreamInferResponse message;
    message.set_error_message(status.message());
    ModelInferResponse* infer_response = message.mutable_infer_response();
    if (!id.empty()) infer_response->set_id(id);
    if (from_response != nullptr) {
      infer_response->set_model_name(from_response->name);
      infer_response->set_model_version(from_response->version);
      (*infer_response->mutable_parameters())["triton_final_response"].set_bool_param(
          final);
    }
    grpc::Slice bytes(message.SerializeAsString());
    Complete(key, std::make_unique<grpc::ByteBuffer>(&bytes, 1), final,
             std::move(trace));
  }

  // `triton_grpc_error` mode: the first response error ends the stream.
  void EndWithError(uint64_t key, const Status& status, bool final) {
    std::vector<std::pair<std::shared_ptr<Model>, RequestPtr>> inflight;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_status_) {
        error_status_ = grpcfe::ToGrpcStatus(status);
        // (The failed request too, unless this was its last response.)
        for (const auto& [other, entry] : inflight_) {
          if (other != key || !final) inflight.push_back(entry);
        }
      }
    }
    for (auto& [model, request] : inflight) model->Cancel(request);
    Complete(key, nullptr, final);
  }

  void Process(std::shared_ptr<grpcfe::ReceivedInferRequest> received,
               uint64_t read_started_ns) {
    // (The received request lives as long as the request: its tensors borrow it.)
    const ModelInferRequest* message = &received->message;
    std::shared_ptr<Model> model;
    Status status =
        impl_->registry_->Find(message->model_name(), message->model_version(), &model);
    uint64_t key;
    {
      std::lock_guard<std::mutex> lock(mu_);
      key = ++next_key_;
      // Unknown models count as non-decoupled, as in Triton.
      if (!status.ok() || !model->spec().decoupled)
        ordered_.push_back({key, false, {}});
    }
    if (!status.ok()) return CompleteWithError(key, status, message->id());

    auto request = std::make_shared<InferenceRequest>();
    auto shm_outputs = std::make_shared<ShmOutputs>();
    status = grpcfe::BuildInferenceRequest(*message, received->raw_inputs, received,
                                           &model->spec(), request.get(), impl_->shm_,
                                           shm_outputs.get());
    if (!status.ok()) return CompleteWithError(key, status, message->id());
    if (impl_->policy_->forwards_headers()) {
      impl_->policy_->ForwardHeaders(ctx_->client_metadata(), &request->parameters);
    }
    request->protocol = InferenceRequest::Protocol::kGrpc;
    request->recv_start_ns = read_started_ns;
    if (model->Tracing()) {
      request->recv_end_ns = NowNs();
      grpcfe::ReadTraceContext(ctx_->client_metadata(), request.get());
    }

    {
      std::lock_guard<std::mutex> lock(mu_);
      inflight_.emplace(key, std::make_pair(model, request));
    }
    const bool decoupled = model->spec().decoupled;
    const bool empty_final = decoupled && WantsEmptyFinal(*message);
    // The callback belongs to the request and runs only while it lives: a plain
    // pointer reads its id and trace (sampled at Enqueue, before any response).
    InferenceRequest* raw = request.get();
    // An empty final response names the model as the request did (Triton echoes
    // the request's model_name and model_version, "" when it gave none).
    request->SetResponseStream(
        [this, key, empty_final, shm_outputs, raw,
         requested = RequestedModel{message->model_name(), message->model_version()}](
            std::unique_ptr<InferenceResponse> result, uint32_t flags) {
          const bool final = (flags & kResponseFlagFinal) != 0;
          std::shared_ptr<RequestTrace> trace = raw->trace;
          if (result && !result->status.ok()) {
            return CompleteWithError(key, result->status, raw->id, final,
                                     std::move(trace), &requested);
          }
          if (!result && !(final && empty_final)) return Complete(key, nullptr, final);
          if (!result) {
            // FINAL alone, and the client asked to see it: an empty response.
            ModelStreamInferResponse empty_final_message;
            ModelInferResponse* empty = empty_final_message.mutable_infer_response();
            empty->set_model_name(requested.name);
            empty->set_model_version(requested.version);
            if (!raw->id.empty()) empty->set_id(raw->id);
            (*empty->mutable_parameters())["triton_final_response"].set_bool_param(
                true);
            grpc::Slice bytes(empty_final_message.SerializeAsString());
            return Complete(key, std::make_unique<grpc::ByteBuffer>(&bytes, 1), final,
                            std::move(trace));
          }
          auto response = std::make_unique<grpc::ByteBuffer>();
          ModelInferResponse scratch;
          Status built = grpcfe::SerializeStreamInferResponse(
              std::move(result), raw->id, shm_outputs.get(), final, &scratch,
              response.get());
          if (!built.ok()) {
            return CompleteWithError(key, built, raw->id, final, std::move(trace),
                                     &requested);
          }
          Complete(key, std::move(response), final, std::move(trace));
        });
    status = model->Enqueue(request);
    if (!status.ok()) CompleteWithError(key, status, message->id());
  }

  // The request's parameter (its type was checked when the request was built; it
  // is not among the request's parameters, which the model sees).
  static bool WantsEmptyFinal(const ModelInferRequest& message) {
    auto found = message.parameters().find("triton_enable_empty_final_response");
    return found != message.parameters().end() &&
           found->second.parameter_choice_case() ==
               inference::InferParameter::kBoolParam &&
           found->second.bool_param();
  }

  Impl* impl_;
  grpc::CallbackServerContext* ctx_;  // valid until OnDone
  grpc::ByteBuffer reading_;          // the read in progress (grpc's thread)
  uint64_t read_started_ns_ = 0;      // of the read in progress (grpc's thread)

  // A request answered in request order, and its answer once it has one.
  struct Ordered {
    uint64_t key;
    bool done = false;
    Write write;  // empty when there is nothing to write
  };

  std::mutex mu_;
  std::deque<Write> writes_;
  size_t queued_bytes_ = 0;         // of the responses in writes_
  bool backlog_was_large_ = false;  // queued_bytes_ reached kTrimAfterQueuedBytes
  std::deque<Ordered> ordered_;     // in request order, until their turn to be written
  std::unordered_map<uint64_t, std::pair<std::shared_ptr<Model>, RequestPtr>> inflight_;
  uint64_t next_key_ = 0;
  int64_t outstanding_ = 0;
  int processing_ = 0;  // reads being processed (OnReadDone, up to its next read)
  bool writing_ = false;
  bool reads_done_ = false;
  bool broken_ = false;
  bool finished_ = false;
  bool closing_ = false;  // the server stops (BeginClosing)
  // `triton_grpc_error: true` (set before the first read, then only read).
  bool errors_end_stream_ = false;
  // The status the stream ends with, once a response error ended it (that mode)
  // or its client stopped reading (QueueWriteLocked).
  std::optional<grpc::Status> error_status_;
};

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>*
GrpcServer::Impl::InferService::ModelStreamInfer(grpc::CallbackServerContext* ctx) {
  return new StreamReactor(impl_, ctx);
}

void GrpcServer::Impl::CloseStreams() {
  std::vector<StreamReactor*> idle;
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    streams_closing_ = true;
    for (StreamReactor* stream : streams_) {
      if (stream->BeginClosing()) idle.push_back(stream);
    }
  }
  for (StreamReactor* stream : idle) stream->Finish(StreamReactor::ClosingStatus());
}

}  // namespace tritonx
