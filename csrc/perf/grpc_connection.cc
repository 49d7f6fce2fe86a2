// gRPC client for tritonx-perf: unary ModelInfer through a generic stub with the
// request serialized once per template (a request costs a ByteBuffer reference, not
// a serialization), and ModelStreamInfer for --streaming (decoupled models): one
// request at a time per stream (sync) or many on one stream (async).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

#include "connection.h"
#include "grpc_process.h"
#include "grpc_service.grpc.pb.h"

namespace tritonx::perf {
namespace {

constexpr char kInferMethod[] = "/inference.GRPCInferenceService/ModelInfer";

void SetShm(google::protobuf::Map<std::string, inference::InferParameter>* params,
            const std::string& region, uint64_t offset, uint64_t size) {
  (*params)["shared_memory_region"].set_string_param(region);
  (*params)["shared_memory_offset"].set_int64_param(static_cast<int64_t>(offset));
  (*params)["shared_memory_byte_size"].set_int64_param(static_cast<int64_t>(size));
}

inference::ModelInferRequest BuildRequest(const Target& target,
                                          const std::vector<InputData>& inputs) {
  inference::ModelInferRequest request;
  request.set_model_name(target.model);
  request.set_model_version(target.version);
  for (const InputData& in : inputs) {
    auto* tensor = request.add_inputs();
    tensor->set_name(in.name);
    tensor->set_datatype(in.datatype);
    for (int64_t d : in.shape) tensor->add_shape(d);
    if (!in.shm_region.empty()) {
      SetShm(tensor->mutable_parameters(), in.shm_region, in.shm_offset,
             in.shm_byte_size);
    } else {
      request.add_raw_input_contents(in.data);
    }
  }
  for (const OutputSpec& out : target.outputs) {
    auto* tensor = request.add_outputs();
    tensor->set_name(out.name);
    if (!out.shm_region.empty()) {
      SetShm(tensor->mutable_parameters(), out.shm_region, out.shm_offset,
             out.shm_byte_size);
    }
  }
  auto& params = *request.mutable_parameters();
  for (const RequestParameter& param : target.parameters) {
    switch (param.kind) {
      case RequestParameter::Kind::kInt:
        params[param.name].set_int64_param(param.int_value);
        break;
      case RequestParameter::Kind::kBool:
        params[param.name].set_bool_param(param.bool_value);
        break;
      case RequestParameter::Kind::kString:
        params[param.name].set_string_param(param.string_value);
        break;
    }
  }
  if (target.decoupled && target.streaming) {
    // Without it a decoupled model's last response may carry no final flag.
    (*request.mutable_parameters())["triton_enable_empty_final_response"]
        .set_bool_param(true);
  }
  return request;
}

// Sets the sequence parameters on a request template (kept between requests: the
// next request of any sequence overwrites all three).
const inference::ModelInferRequest& WithSequence(inference::ModelInferRequest* request,
                                                 const SequenceParams& seq) {
  if (seq.id != 0) {
    auto& params = *request->mutable_parameters();
    params["sequence_id"].set_int64_param(static_cast<int64_t>(seq.id));
    params["sequence_start"].set_bool_param(seq.start);
    params["sequence_end"].set_bool_param(seq.end);
  }
  return *request;
}

// A completion queue's deadline is a system_clock time; the load driver's
// deadlines are steady-clock nanoseconds (NowNs). A deadline already past is "now".
std::chrono::system_clock::time_point QueueDeadline(int64_t deadline_ns) {
  return std::chrono::system_clock::now() +
         std::chrono::nanoseconds(std::max<int64_t>(deadline_ns - NowNs(), 0));
}

grpc::ByteBuffer Serialize(const google::protobuf::Message& message) {
  std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// Up to kChannelShare connections share one channel (one HTTP/2 connection), as
// tritonclient's cached channels do for perf_analyzer; more get a new one.
constexpr int kChannelShare = 6;

std::shared_ptr<grpc::ChannelCredentials> Credentials(const GrpcTls& tls) {
  if (!tls.use_ssl) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = tls.root_certs;
  options.pem_private_key = tls.private_key;
  options.pem_cert_chain = tls.cert_chain;
  return grpc::SslCredentials(options);
}

std::shared_ptr<grpc::Channel> SharedChannel(const Target& target) {
  struct Entry {
    std::weak_ptr<grpc::Channel> channel;
    int users = 0;
  };
  static std::mutex mu;  // guards cache
  static std::map<std::string, Entry> cache;
  // Channels of targets that differ in security or compression are not shared.
  const std::string key = target.url + '\n' + target.grpc_compression + '\n' +
                          (target.grpc_tls.use_ssl ? "ssl" : "plain");
  std::lock_guard<std::mutex> lock(mu);
  Entry& entry = cache[key];
  std::shared_ptr<grpc::Channel> channel = entry.channel.lock();
  if (channel && entry.users < kChannelShare) {
    ++entry.users;
    return channel;
  }
  grpcfe::TurnOffAbslDeadlockDetection();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // A channel of its own TCP connection (grpc otherwise multiplexes every channel
  // with equal arguments onto one).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // The channel's default algorithm compresses every message the client sends
  // (unary and stream), which is what tritonclient's per-call setting does for
  // perf_analyzer; the server answers uncompressed unless it chooses otherwise.
  if (target.grpc_compression == "gzip") {
    args.SetCompressionAlgorithm(GRPC_COMPRESS_GZIP);
  } else if (target.grpc_compression == "deflate") {
    args.SetCompressionAlgorithm(GRPC_COMPRESS_DEFLATE);
  }
  channel = grpc::CreateCustomChannel(target.url, Credentials(target.grpc_tls), args);
  entry.channel = channel;
  entry.users = 1;
  return channel;
}

// Thread-safety: one worker thread at a time. Ownership: shares its channel, owns its
// completion queue, its stream and its copies of the request templates.
class GrpcConnection : public Connection {
 public:
  explicit GrpcConnection(std::shared_ptr<const Target> target)
      : target_(std::move(target)) {
    channel_ = SharedChannel(*target_);
    generic_ = std::make_unique<grpc::GenericStub>(channel_);
    stub_ = inference::GRPCInferenceService::NewStub(channel_);
    for (const auto& step : target_->steps) {
      requests_.push_back(BuildRequest(*target_, step));
      serialized_.push_back(Serialize(requests_.back()));
    }
  }

  ~GrpcConnection() override {
    CloseStream();
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  void Infer(size_t step, const SequenceParams& seq, RequestRecord* rec) override {
    const size_t index = step % requests_.size();
    MarkSequence(seq, rec);
    rec->start_ns = NowNs();
    if (target_->streaming) {
      InferStream(index, seq, rec);
    } else {
      InferUnary(index, seq, rec);
    }
    rec->end_ns = NowNs();
    if (!rec->ok) {
      // A server that is down fails every call at once: keep that from spinning.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

 private:
  void InferUnary(size_t index, const SequenceParams& seq, RequestRecord* rec) {
    grpc::ByteBuffer request = seq.id == 0
                                   ? serialized_[index]
                                   : Serialize(WithSequence(&requests_[index], seq));
    grpc::ClientContext context;
    auto call = generic_->PrepareUnaryCall(&context, kInferMethod, request, &cq_);
    call->StartCall();
    grpc::ByteBuffer response;
    grpc::Status status;
    call->Finish(&response, &status, this);
    rec->send_ns = NowNs() - rec->start_ns;
    void* tag = nullptr;
    bool ok = false;
    if (!cq_.Next(&tag, &ok) || !ok) {
      error_ = "gRPC completion queue failed";
      rec->ok = false;
      return;
    }
    const int64_t arrived = NowNs();
    if (!status.ok()) {
      error_ = status.error_message();
      rec->ok = false;
      return;
    }
    inference::ModelInferResponse decoded;
    grpc::ProtoBufferReader reader(&response);
    if (!decoded.ParseFromZeroCopyStream(&reader)) {
      error_ = "cannot decode the ModelInfer response";
      rec->ok = false;
      return;
    }
    rec->recv_ns = NowNs() - arrived;
    rec->response_ns.push_back(arrived);
    rec->ok = true;
  }

  void CloseStream() {
    if (!stream_) return;
    stream_context_->TryCancel();
    stream_->Finish();
    stream_.reset();
    stream_context_.reset();
  }

  void InferStream(size_t index, const SequenceParams& seq, RequestRecord* rec) {
    if (!stream_) {
      stream_context_ = std::make_unique<grpc::ClientContext>();
      stream_ = stub_->ModelStreamInfer(stream_context_.get());
    }
    const auto& request = WithSequence(&requests_[index], seq);
    const bool written = stream_->Write(request);
    rec->send_ns = NowNs() - rec->start_ns;
    if (!written) {
      const grpc::Status status = stream_->Finish();
      error_ = status.ok() ? "the stream was closed" : status.error_message();
      stream_.reset();
      stream_context_.reset();
      rec->ok = false;
      return;
    }
    inference::ModelStreamInferResponse response;
    for (;;) {
      if (!stream_->Read(&response)) {
        const grpc::Status status = stream_->Finish();
        error_ = status.ok() ? "the stream ended before the final response"
                             : status.error_message();
        stream_.reset();
        stream_context_.reset();
        rec->ok = false;
        return;
      }
      const int64_t arrived = NowNs();
      if (!response.error_message().empty()) {
        error_ = response.error_message();
        rec->ok = false;
        return;
      }
      const auto& infer = response.infer_response();
      if (infer.outputs_size() > 0) rec->response_ns.push_back(arrived);
      bool final = !target_->decoupled;
      const auto it = infer.parameters().find("triton_final_response");
      if (it != infer.parameters().end()) final = it->second.bool_param();
      if (final) break;
    }
    rec->ok = true;
  }

  std::shared_ptr<const Target> target_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> generic_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
  grpc::CompletionQueue cq_;
  std::vector<inference::ModelInferRequest> requests_;
  std::vector<grpc::ByteBuffer> serialized_;
  std::unique_ptr<grpc::ClientContext> stream_context_;
  std::unique_ptr<grpc::ClientReaderWriter<inference::ModelInferRequest,
                                           inference::ModelStreamInferResponse>>
      stream_;
};

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

std::unique_ptr<Connection> ConnectGrpc(const std::shared_ptr<const Target>& target,
                                        std::string* error) {
  // Channels connect lazily; an unreachable server shows in the first call's status.
  return std::make_unique<GrpcConnection>(target);
}

}  // namespace tritonx::perf
