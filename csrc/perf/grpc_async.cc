// gRPC clients for tritonx-perf's asynchronous workers (--async): many unary calls in
// flight on one completion queue, or many requests on one ModelStreamInfer stream
// (--streaming), from one thread.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>

#include "connection.h"
#include "grpc_request.h"

namespace tritonx::perf {
namespace {

// Many unary calls in flight from one thread (--async): every call is a tag on the
// client's completion queue; Poll takes the finished ones off it.
// Thread-safety: one thread (its worker). Ownership: owns its completion queue and
// the calls in flight (deleted when they finish, or when the client goes).
class GrpcAsyncClient : public AsyncClient {
 public:
  explicit GrpcAsyncClient(std::shared_ptr<const Target> target)
      : target_(std::move(target)) {
    channel_ = SharedChannel(*target_);
    generic_ = std::make_unique<grpc::GenericStub>(channel_);
    for (const auto& step : target_->steps) {
      requests_.push_back(BuildRequest(*target_, step));
      serialized_.push_back(Serialize(requests_.back()));
    }
  }

  ~GrpcAsyncClient() override {
    // Calls a server never answered end now instead of holding the queue open.
    for (Call* call : calls_) call->context.TryCancel();
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) delete static_cast<Call*>(tag);
  }

  bool Send(size_t step, const SequenceParams& seq,
            RequestRecord* /*failed*/) override {
    auto* call = new Call;
    MarkSequence(seq, &call->rec);
    call->rec.start_ns = NowNs();
    const size_t index = step % serialized_.size();
    // A sequence's request carries its parameters: serialized per request, as the
    // synchronous client does. The call keeps its buffer (a reference) until done.
    call->request = seq.id == 0 ? serialized_[index]
                                : Serialize(WithSequence(&requests_[index], seq));
    call->reader =
        generic_->PrepareUnaryCall(&call->context, kInferMethod, call->request, &cq_);
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status, call);
    call->rec.send_ns = NowNs() - call->rec.start_ns;
    calls_.insert(call);
    ++in_flight_;
    return true;
  }

  void Poll(int64_t deadline_ns, std::vector<RequestRecord>* done) override {
    if (in_flight_ == 0) {
      const int64_t wait = deadline_ns - NowNs();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
      return;
    }
    auto deadline = QueueDeadline(deadline_ns);
    for (;;) {
      void* tag = nullptr;
      bool ok = false;
      const auto status = cq_.AsyncNext(&tag, &ok, deadline);
      if (status != grpc::CompletionQueue::GOT_EVENT) return;
      std::unique_ptr<Call> call(static_cast<Call*>(tag));
      calls_.erase(call.get());
      --in_flight_;
      Complete(call.get(), ok);
      done->push_back(std::move(call->rec));
      // Collect what else is ready without waiting again.
      deadline = std::chrono::system_clock::now();
    }
  }

  size_t InFlight() const override { return in_flight_; }

 private:
  struct Call {
    grpc::ClientContext context;
    std::unique_ptr<grpc::GenericClientAsyncResponseReader> reader;
    grpc::ByteBuffer request;
    grpc::ByteBuffer response;
    grpc::Status status;
    RequestRecord rec;
  };

  void Complete(Call* call, bool ok) {
    RequestRecord& rec = call->rec;
    const int64_t arrived = NowNs();
    rec.end_ns = arrived;
    if (!ok) {
      error_ = "gRPC completion queue failed";
      return;
    }
    if (!call->status.ok()) {
      error_ = call->status.error_message();
      return;
    }
    inference::ModelInferResponse decoded;
    grpc::ProtoBufferReader reader(&call->response);
    if (!decoded.ParseFromZeroCopyStream(&reader)) {
      error_ = "cannot decode the ModelInfer response";
      return;
    }
    rec.end_ns = NowNs();
    rec.recv_ns = rec.end_ns - arrived;
    rec.response_ns.push_back(arrived);
    rec.ok = true;
  }

  std::shared_ptr<const Target> target_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> generic_;
  grpc::CompletionQueue cq_;
  std::vector<inference::ModelInferRequest> requests_;
  std::vector<grpc::ByteBuffer> serialized_;
  std::unordered_set<Call*> calls_;  // in flight; owned through their queue tags
  size_t in_flight_ = 0;
};

// Many requests in flight on one ModelStreamInfer stream (--streaming with async, as
// perf_analyzer streams): writes go out one at a time from a queue, one read is
// always pending, and responses find their request by the id each request carries.
// Thread-safety: one thread (its worker). Ownership: owns its completion queue, its
// stream and the requests in flight.
class GrpcStreamAsyncClient : public AsyncClient {
 public:
  explicit GrpcStreamAsyncClient(std::shared_ptr<const Target> target)
      : target_(std::move(target)) {
    stub_ = inference::GRPCInferenceService::NewStub(SharedChannel(*target_));
    for (const auto& step : target_->steps) {
      requests_.push_back(BuildRequest(*target_, step));
    }
  }

  ~GrpcStreamAsyncClient() override {
    if (stream_) context_->TryCancel();
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  bool Send(size_t step, const SequenceParams& seq, RequestRecord* failed) override {
    if (broken_) {
      // The stream failed (the server went away or ended it): so do the requests
      // that follow; the run reports the error.
      ++next_id_;  // numbered all the same (ResponsesSoFar)
      failed->start_ns = failed->end_ns = NowNs();
      MarkSequence(seq, failed);
      return false;
    }
    if (!stream_) Open();
    inference::ModelInferRequest request =
        WithSequence(&requests_[step % requests_.size()], seq);
    const std::string id = std::to_string(++next_id_);
    request.set_id(id);
    RequestRecord& rec = pending_[id];
    MarkSequence(seq, &rec);
    rec.start_ns = NowNs();
    writes_.push_back(std::move(request));
    if (started_ && !writing_) WriteNext();
    rec.send_ns = NowNs() - rec.start_ns;
    return true;
  }

  void Poll(int64_t deadline_ns, std::vector<RequestRecord>* done) override {
    // Requests of a stream that failed are answered (as failures) here.
    for (auto& rec : failed_) done->push_back(std::move(rec));
    failed_.clear();
    if (!stream_ || pending_.empty()) {
      const int64_t wait = deadline_ns - NowNs();
      if (done->empty() && wait > 0) {
        std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
      }
      return;
    }
    auto deadline = QueueDeadline(deadline_ns);
    for (;;) {
      void* tag = nullptr;
      bool ok = false;
      if (cq_.AsyncNext(&tag, &ok, deadline) != grpc::CompletionQueue::GOT_EVENT) break;
      Handle(tag, ok, done);
      deadline = std::chrono::system_clock::now();  // only what is ready now
    }
    for (auto& rec : failed_) done->push_back(std::move(rec));
    failed_.clear();
  }

  size_t InFlight() const override { return pending_.size() + failed_.size(); }

  std::optional<size_t> ResponsesSoFar(uint64_t nth) const override {
    const auto it = pending_.find(std::to_string(nth));
    if (it == pending_.end()) return std::nullopt;
    return it->second.responses;
  }

 private:
  // Completion queue tags: the stream's three kinds of operation.
  static void* Tag(int kind) {
    return reinterpret_cast<void*>(static_cast<intptr_t>(kind));
  }
  enum : int { kStart = 1, kWrite = 2, kRead = 3 };

  void Open() {
    context_ = std::make_unique<grpc::ClientContext>();
    stream_ = stub_->PrepareAsyncModelStreamInfer(context_.get(), &cq_);
    stream_->StartCall(Tag(kStart));
    started_ = writing_ = false;
  }

  void WriteNext() {
    if (writes_.empty()) return;
    writing_ = true;
    stream_->Write(writes_.front(), Tag(kWrite));
  }

  void FailAll(const std::string& why) {
    error_ = why;
    broken_ = true;
    const int64_t now = NowNs();
    for (auto& [id, rec] : pending_) {
      rec.ok = false;
      rec.end_ns = now;
      failed_.push_back(std::move(rec));
    }
    pending_.clear();
    writes_.clear();
    writing_ = false;
  }

  void Handle(void* tag, bool ok, std::vector<RequestRecord>* done) {
    const auto kind = static_cast<int>(reinterpret_cast<intptr_t>(tag));
    if (broken_) return;  // a tag of the stream that failed
    if (!ok) {
      FailAll(kind == kStart ? "failed to open the inference stream"
                             : "the stream ended before the final response");
      return;
    }
    switch (kind) {
      case kStart:
        started_ = true;
        stream_->Read(&response_, Tag(kRead));
        WriteNext();
        break;
      case kWrite:
        writing_ = false;
        writes_.pop_front();
        WriteNext();
        break;
      case kRead:
        Received(done);
        stream_->Read(&response_, Tag(kRead));
        break;
      default:
        break;
    }
  }

  void Received(std::vector<RequestRecord>* done) {
    const int64_t arrived = NowNs();
    const auto& infer = response_.infer_response();
    const auto it = pending_.find(infer.id());
    if (it == pending_.end()) return;  // not ours (or already failed)
    RequestRecord& rec = it->second;
    bool final = !target_->decoupled;
    if (!response_.error_message().empty()) {
      error_ = response_.error_message();
      rec.ok = false;
      final = true;
    } else {
      ++rec.responses;
      if (infer.outputs_size() > 0) rec.response_ns.push_back(arrived);
      const auto param = infer.parameters().find("triton_final_response");
      if (param != infer.parameters().end()) final = param->second.bool_param();
      rec.ok = true;
    }
    if (!final) return;
    rec.end_ns = NowNs();
    done->push_back(std::move(rec));
    pending_.erase(it);
  }

  std::shared_ptr<const Target> target_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
  grpc::CompletionQueue cq_;
  std::vector<inference::ModelInferRequest> requests_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<inference::ModelInferRequest,
                                                inference::ModelStreamInferResponse>>
      stream_;
  inference::ModelStreamInferResponse response_;     // the pending read's target
  std::deque<inference::ModelInferRequest> writes_;  // front: being written
  std::map<std::string, RequestRecord> pending_;     // by request id
  std::vector<RequestRecord> failed_;
  uint64_t next_id_ = 0;
  bool started_ = false, writing_ = false, broken_ = false;
};

}  // namespace

std::unique_ptr<AsyncClient> MakeGrpcAsync(const std::shared_ptr<const Target>& target,
                                           std::string* /*error*/) {
  if (target->streaming) return std::make_unique<GrpcStreamAsyncClient>(target);
  return std::make_unique<GrpcAsyncClient>(target);
}

}  // namespace tritonx::perf
