// gRPC connections for tritonx-perf's synchronous workers: unary ModelInfer through
// a generic stub with the request serialized once per template (a request costs a
// ByteBuffer reference, not a serialization), and ModelStreamInfer for --streaming
// (decoupled models), one request at a time per stream.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <cstdint>
#include <string>
#include <thread>

#include "connection.h"
#include "grpc_request.h"

namespace tritonx::perf {
namespace {

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

}  // namespace

std::unique_ptr<Connection> ConnectGrpc(const std::shared_ptr<const Target>& target,
                                        std::string* error) {
  // Channels connect lazily; an unreachable server shows in the first call's status.
  return std::make_unique<GrpcConnection>(target);
}

}  // namespace tritonx::perf
