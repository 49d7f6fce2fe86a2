#include "grpc_server.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <deque>
#include <unordered_map>

#include "grpc_service.grpc.pb.h"
#include "infer_codec.h"
#include "worker_pool.h"

namespace tritonx {
namespace {

using inference::GRPCInferenceService;
using inference::ModelInferRequest;
using inference::ModelInferResponse;
using inference::ModelStreamInferResponse;

// Only the two inference RPCs are served by this service; the others are marked
// generic so that grpc routes them to the ControlService below, which forwards
// the raw bytes to the ControlHandler. ModelInfer is taken raw and parsed here so
// that an undecodable message gets Triton's answer (INTERNAL "Unable to parse
// request") rather than grpc's bare UNIMPLEMENTED.
using ServiceBase = GRPCInferenceService::WithRawCallbackMethod_ModelInfer<
    GRPCInferenceService::WithCallbackMethod_ModelStreamInfer<GRPCInferenceService::WithGenericMethod_ServerLive<
        GRPCInferenceService::WithGenericMethod_ServerReady<GRPCInferenceService::WithGenericMethod_ModelReady<
            GRPCInferenceService::WithGenericMethod_ServerMetadata<GRPCInferenceService::WithGenericMethod_ModelMetadata<
                GRPCInferenceService::WithGenericMethod_ModelConfig<GRPCInferenceService::WithGenericMethod_ModelStatistics<
                    GRPCInferenceService::WithGenericMethod_RepositoryIndex<
                        GRPCInferenceService::WithGenericMethod_RepositoryModelLoad<
                            GRPCInferenceService::WithGenericMethod_RepositoryModelUnload<
                                GRPCInferenceService::WithGenericMethod_SystemSharedMemoryStatus<
                                    GRPCInferenceService::WithGenericMethod_SystemSharedMemoryRegister<
                                        GRPCInferenceService::WithGenericMethod_SystemSharedMemoryUnregister<
                                            GRPCInferenceService::WithGenericMethod_CudaSharedMemoryStatus<
                                                GRPCInferenceService::WithGenericMethod_CudaSharedMemoryRegister<
                                                    GRPCInferenceService::WithGenericMethod_CudaSharedMemoryUnregister<
                                                        GRPCInferenceService::WithGenericMethod_TraceSetting<
                                                            GRPCInferenceService::WithGenericMethod_LogSettings<
                                                                GRPCInferenceService::
                                                                    Service>>>>>>>>>>>>>>>>>>>>;

// ---------------------------------------------------------------------------
// ModelInfer messages outlive the RPC when they must: the input tensors point
// into the request message, and a request may still sit in a backend after
// the client has gone away. The tensors hold their own reference to them.

struct InferMessages {
  ModelInferRequest request;
  ModelInferResponse response;
  ShmOutputs shm_outputs;  // outputs the client wants written into its regions
};

// Parses a message from a received buffer without flattening it first.
bool ParseFromBuffer(const grpc::ByteBuffer& buffer, google::protobuf::Message* msg) {
  if (!buffer.Valid()) return true;  // an empty message: every field at its default
  grpc::ByteBuffer view(buffer);  // shares the slices; the reader needs a mutable one
  grpc::ProtoBufferReader reader(&view);
  return msg->ParseFromZeroCopyStream(&reader);
}

std::string FlattenByteBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  out.reserve(buffer.Length());
  for (const auto& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

grpc_compression_level CompressionLevelFromName(const std::string& name) {
  if (name == "low") return GRPC_COMPRESS_LEVEL_LOW;
  if (name == "medium") return GRPC_COMPRESS_LEVEL_MED;
  if (name == "high") return GRPC_COMPRESS_LEVEL_HIGH;
  return GRPC_COMPRESS_LEVEL_NONE;
}

}  // namespace

// ---------------------------------------------------------------------------
// Thread safety: mu_ guards server_ and pool_; everything else is set before the
// server starts serving and only read while it runs.

class GrpcServer::Impl {
 public:
  Impl(std::shared_ptr<ModelRegistry> registry, ControlHandler handler,
       GrpcServerOptions options)
      : registry_(std::move(registry)),
        handler_(std::move(handler)),
        options_(std::move(options)),
        shm_(options_.shared_memory.get()),
        compression_(CompressionLevelFromName(options_.infer_compression_level)),
        infer_service_(this),
        control_service_(this) {}

  Status Start(const std::string& address, int port, int* bound_port);
  void Stop(double grace_seconds);
  bool running() const {
    std::lock_guard<std::mutex> lock(mu_);
    return server_ != nullptr;
  }

 private:
  // grpc threads running a model inline right now (at most one; see ModelInfer).
  std::atomic<int> inline_running_{0};

  class InferReactor;
  class StreamReactor;
  class ControlReactor;

  class InferService : public ServiceBase {
   public:
    explicit InferService(Impl* impl) : impl_(impl) {}
    grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
    grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse>*
    ModelStreamInfer(grpc::CallbackServerContext* ctx) override;

   private:
    Impl* impl_;
  };

  class ControlService : public grpc::CallbackGenericService {
   public:
    explicit ControlService(Impl* impl) : impl_(impl) {}
    grpc::ServerGenericBidiReactor* CreateReactor(
        grpc::GenericCallbackServerContext* ctx) override;

   private:
    Impl* impl_;
  };

  std::shared_ptr<ModelRegistry> registry_;
  ControlHandler handler_;
  const GrpcServerOptions options_;
  const SharedMemoryRegistry* const shm_;  // options_.shared_memory, may be null
  const grpc_compression_level compression_;
  InferService infer_service_;
  ControlService control_service_;
  std::unique_ptr<grpcfe::WorkerPool> pool_;
  // Restricted protocols and header forwarding; set by Start before the server
  // runs and left alone until it has stopped, so reactors read it unlocked.
  std::unique_ptr<grpcfe::CallPolicy> policy_;

  mutable std::mutex mu_;
  std::unique_ptr<grpc::Server> server_;
};

// ---------------------------------------------------------------------------
// Unary ModelInfer. The reactor deletes itself in OnDone; grpc calls OnCancel and
// OnDone at most once each, from its own threads, while the response callback
// may call Finish from a core thread.

class GrpcServer::Impl::InferReactor : public grpc::ServerUnaryReactor {
 public:
  InferReactor(std::shared_ptr<Model> model, RequestPtr request)
      : model_(std::move(model)), request_(std::move(request)) {}

  void OnCancel() override {
    // The client went away or its deadline passed: drop the request if it is
    // still queued; an executing one is flagged for the backend to notice.
    // Either way the response callback still runs and calls Finish.
    model_->Cancel(request_);
  }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<Model> model_;
  RequestPtr request_;
};

grpc::ServerUnaryReactor* GrpcServer::Impl::InferService::ModelInfer(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request_buffer,
    grpc::ByteBuffer* response_buffer) {
  auto fail = [ctx](const grpc::Status& status) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  };

  // Tensors borrow the request message's bytes; `messages` keeps them valid for
  // as long as the core holds the request.
  auto messages = std::make_shared<InferMessages>();
  const ModelInferRequest* request = &messages->request;
  // Triton parses before it checks the protocol restriction.
  if (!ParseFromBuffer(*request_buffer, &messages->request)) {
    return fail(grpc::Status(grpc::StatusCode::INTERNAL, grpcfe::kParseFailure));
  }
  const grpcfe::CallPolicy& policy = *impl_->policy_;
  if (policy.restricted(grpcfe::ProtocolGroup::kInference)) {
    grpc::Status admitted =
        policy.Admit(grpcfe::ProtocolGroup::kInference, ctx->client_metadata());
    if (!admitted.ok()) return fail(admitted);
  }

  std::shared_ptr<Model> model;
  Status status =
      impl_->registry_->Find(request->model_name(), request->model_version(), &model);
  if (!status.ok()) return fail(grpcfe::ToGrpcStatus(status));
  if (model->spec().decoupled) {
    // One response per call cannot carry a stream: Triton sends such clients to
    // ModelStreamInfer.
    return fail(grpc::Status(
        grpc::StatusCode::UNIMPLEMENTED,
        "ModelInfer RPC doesn't support models with decoupled transaction policy"));
  }

  auto infer_request = std::make_shared<InferenceRequest>();
  status = grpcfe::BuildInferenceRequest(*request, messages, &model->spec(),
                                         infer_request.get(), impl_->shm_,
                                         &messages->shm_outputs);
  if (!status.ok()) return fail(grpcfe::ToGrpcStatus(status));
  if (policy.forwards_headers()) {
    policy.ForwardHeaders(ctx->client_metadata(), &infer_request->parameters);
  }

  if (impl_->compression_ != GRPC_COMPRESS_LEVEL_NONE) {
    ctx->set_compression_level(impl_->compression_);
  }

  auto* reactor = new InferReactor(model, infer_request);
  infer_request->SetResponseCallback([reactor, messages, response_buffer](
                                         std::unique_ptr<InferenceResponse> result) {
    if (!result->status.ok()) {
      reactor->Finish(grpcfe::ToGrpcStatus(result->status));
      return;
    }
    ModelInferResponse& response = messages->response;
    Status built = grpcfe::BuildInferResponse(*result, messages->request.id(),
                                              &response, &messages->shm_outputs);
    if (!built.ok()) {
      reactor->Finish(grpcfe::ToGrpcStatus(built));
      return;
    }
    bool own_buffer = false;
    grpc::Status serialized = grpc::SerializationTraits<ModelInferResponse>::Serialize(
        response, response_buffer, &own_buffer);
    reactor->Finish(serialized);
  });
  // Inline dispatch: a cheap model may run on this grpc thread instead of waking its
  // worker (the scheduler decides from measured execution times; measured worth
  // 1.2-1.6x at concurrency 4). Only one grpc thread at a time may do so, and grpc's
  // callback pool has at least two, so another thread always serves the other RPCs:
  // a model that turns slow delays only its own request.
  const bool may_inline = impl_->inline_running_.fetch_add(1) == 0;
  if (!may_inline) impl_->inline_running_.fetch_sub(1);
  status = model->Enqueue(infer_request, /*caller_waits=*/may_inline);
  if (may_inline) impl_->inline_running_.fetch_sub(1);
  if (!status.ok()) reactor->Finish(grpcfe::ToGrpcStatus(status));
  return reactor;
}

// ---------------------------------------------------------------------------
// ModelStreamInfer: every request read is enqueued at once; its responses are
// written as they come, in completion order across requests and in send order
// within one (a decoupled model sends 0..N responses then FINAL); each carries
// `triton_final_response`, and a FINAL without data is written only when the request
// set `triton_enable_empty_final_response`. grpc allows one outstanding write per
// stream, so responses wait in a queue for their turn. Errors travel as
// `error_message` without closing the stream. The stream finishes once the client
// has half-closed and every request has sent FINAL and been written. Thread safety:
// reactions come from grpc threads and responses from core threads; mu_ guards the
// shared state. The reactor deletes itself in OnDone.

class GrpcServer::Impl::StreamReactor
    : public grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse> {
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
    NextRead();
  }

  void OnReadDone(bool ok) override {
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
    std::shared_ptr<ModelInferRequest> message = std::move(reading_);
    {
      // Counted before the next read so the stream cannot finish under us.
      std::lock_guard<std::mutex> lock(mu_);
      ++outstanding_;
    }
    NextRead();
    Process(std::move(message));
  }

  void OnWriteDone(bool ok) override {
    Action action;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writes_.pop_front();
      writing_ = false;
      if (!ok) {
        // The client is gone; nothing more can be delivered.
        broken_ = true;
        writes_.clear();
      }
      action = NextActionLocked();
    }
    Act(action);
  }

  void OnCancel() override {
    std::vector<std::pair<std::shared_ptr<Model>, RequestPtr>> inflight;
    {
      std::lock_guard<std::mutex> lock(mu_);
      broken_ = true;
      for (const auto& entry : inflight_) inflight.push_back(entry.second);
    }
    for (auto& [model, request] : inflight) model->Cancel(request);
  }

  void OnDone() override { delete this; }

 private:
  struct Action {
    const ModelStreamInferResponse* write = nullptr;
    bool finish = false;
  };

  void NextRead() {
    reading_ = std::make_shared<ModelInferRequest>();
    StartRead(reading_.get());
  }

  // Decides the next step under the lock; the step itself runs unlocked since
  // grpc may run reactions inline.
  Action NextActionLocked() {
    Action action;
    if (!writing_ && !writes_.empty()) {
      writing_ = true;
      action.write = writes_.front().get();
    } else if (!writing_ && writes_.empty() && reads_done_ && outstanding_ == 0 &&
               !finished_) {
      finished_ = true;
      action.finish = true;
    }
    return action;
  }

  void Act(const Action& action) {
    if (action.write != nullptr) {
      StartWrite(action.write);
    } else if (action.finish) {
      Finish(grpc::Status::OK);
    }
  }

  // Queues `response` (may be null: nothing to write) for the request `key`; with
  // `final` the request is done.
  void Complete(uint64_t key, std::unique_ptr<ModelStreamInferResponse> response,
                bool final = true) {
    Action action;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (final) {
        if (key != 0) inflight_.erase(key);
        --outstanding_;
      }
      if (!broken_ && response) writes_.push_back(std::move(response));
      action = NextActionLocked();
    }
    // Past this point another thread may finish the stream and delete `this`,
    // so Act is the last use of it.
    Act(action);
  }

  // Like Triton, the failed request's id rides along so clients can match it.
  void CompleteWithError(uint64_t key, const Status& status, const std::string& id,
                         bool final = true) {
    auto response = std::make_unique<ModelStreamInferResponse>();
    response->set_error_message(status.message());
    if (!id.empty()) response->mutable_infer_response()->set_id(id);
    Complete(key, std::move(response), final);
  }

  void Process(std::shared_ptr<ModelInferRequest> message) {
    std::shared_ptr<Model> model;
    Status status =
        impl_->registry_->Find(message->model_name(), message->model_version(), &model);
    if (!status.ok()) return CompleteWithError(0, status, message->id());

    auto request = std::make_shared<InferenceRequest>();
    auto shm_outputs = std::make_shared<ShmOutputs>();
    status =
        grpcfe::BuildInferenceRequest(*message, message, &model->spec(), request.get(),
                                      impl_->shm_, shm_outputs.get());
    if (!status.ok()) return CompleteWithError(0, status, message->id());
    if (impl_->policy_->forwards_headers()) {
      impl_->policy_->ForwardHeaders(ctx_->client_metadata(), &request->parameters);
    }

    uint64_t key;
    {
      std::lock_guard<std::mutex> lock(mu_);
      key = ++next_key_;
      inflight_.emplace(key, std::make_pair(model, request));
    }
    const bool decoupled = model->spec().decoupled;
    const bool empty_final = decoupled && WantsEmptyFinal(request->parameters);
    request->SetResponseStream(
        [this, key, message, empty_final, shm_outputs, name = model->spec().name,
         version = model->spec().version](std::unique_ptr<InferenceResponse> result,
                                          uint32_t flags) {
          const bool final = (flags & kResponseFlagFinal) != 0;
          if (result && !result->status.ok()) {
            return CompleteWithError(key, result->status, message->id(), final);
          }
          if (!result && !(final && empty_final)) return Complete(key, nullptr, final);
          if (!result) {
            // FINAL alone, and the client asked to see it: an empty response.
            result = std::make_unique<InferenceResponse>();
            result->model_name = name;
            result->model_version = version;
          }
          auto response = std::make_unique<ModelStreamInferResponse>();
          ModelInferResponse* infer = response->mutable_infer_response();
          Status built = grpcfe::BuildInferResponse(*result, message->id(), infer,
                                                    shm_outputs.get());
          if (!built.ok()) return CompleteWithError(key, built, message->id(), final);
          // Every stream response says whether it is its request's last (Triton does
          // so for non-decoupled models too).
          (*infer->mutable_parameters())["triton_final_response"].set_bool_param(final);
          Complete(key, std::move(response), final);
        });
    status = model->Enqueue(request);
    if (!status.ok()) CompleteWithError(key, status, message->id());
  }

  static bool WantsEmptyFinal(const Parameters& parameters) {
    for (const auto& [key, value] : parameters) {
      if (key == "triton_enable_empty_final_response") {
        const bool* flag = std::get_if<bool>(&value);
        return flag != nullptr && *flag;
      }
    }
    return false;
  }

  Impl* impl_;
  grpc::CallbackServerContext* ctx_;  // valid until OnDone
  std::shared_ptr<ModelInferRequest> reading_;

  std::mutex mu_;
  std::deque<std::unique_ptr<ModelStreamInferResponse>> writes_;
  std::unordered_map<uint64_t, std::pair<std::shared_ptr<Model>, RequestPtr>> inflight_;
  uint64_t next_key_ = 0;
  int64_t outstanding_ = 0;
  bool writing_ = false;
  bool reads_done_ = false;
  bool broken_ = false;
  bool finished_ = false;
};

grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse>*
GrpcServer::Impl::InferService::ModelStreamInfer(grpc::CallbackServerContext* ctx) {
  return new StreamReactor(impl_, ctx);
}

// ---------------------------------------------------------------------------
// Control plane: one request message in, one response message out, computed by
// the ControlHandler on the worker pool (it may take the GIL and block). One
// reactor per call, used by one thread at a time; it deletes itself in OnDone.

class GrpcServer::Impl::ControlReactor : public grpc::ServerGenericBidiReactor {
 public:
  ControlReactor(Impl* impl, grpc::GenericCallbackServerContext* ctx)
      : impl_(impl), ctx_(ctx), method_(ctx->method()) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "no request message received"));
      return;
    }
    impl_->pool_->Submit([this] { Run(); });
  }

  void OnDone() override { delete this; }

 private:
  void Run() {
    std::string request = FlattenByteBuffer(request_);
    // Triton parses the message before it checks the protocol restriction.
    if (!grpcfe::ControlRequestParses(method_, request)) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL, grpcfe::kParseFailure));
      return;
    }
    grpc::Status status =
        impl_->policy_->Admit(grpcfe::GroupOfMethod(method_), ctx_->client_metadata());
    if (!status.ok()) {
      Finish(status);
      return;
    }
    std::string response;
    status = impl_->handler_(method_, request, &response);
    if (!status.ok()) {
      Finish(status);
      return;
    }
    grpc::Slice slice(response);
    response_ = grpc::ByteBuffer(&slice, 1);
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }

  Impl* impl_;
  grpc::GenericCallbackServerContext* ctx_;  // valid until OnDone
  std::string method_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
};

grpc::ServerGenericBidiReactor* GrpcServer::Impl::ControlService::CreateReactor(
    grpc::GenericCallbackServerContext* ctx) {
  return new ControlReactor(impl_, ctx);
}

// ---------------------------------------------------------------------------

Status GrpcServer::Impl::Start(const std::string& address, int port, int* bound_port) {
  std::lock_guard<std::mutex> lock(mu_);
  if (server_ != nullptr) {
    return Status(StatusCode::kAlreadyExists, "gRPC server is already running");
  }
  std::string host = address;
  if (host.find(':') != std::string::npos && host.front() != '[') {
    host = "[" + host + "]";  // IPv6 literal
  }
  const std::string target = host + ":" + std::to_string(port);

  std::unique_ptr<grpcfe::CallPolicy> policy;
  Status policy_status = grpcfe::CallPolicy::Create(
      options_.restricted_protocols, options_.header_forward_pattern, &policy);
  if (!policy_status.ok()) return policy_status;
  policy_ = std::move(policy);

  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (options_.use_ssl) {
    // Without these grpc only fails to listen, which reads as a port problem.
    if (options_.server_cert.empty() || options_.server_key.empty()) {
      return Status(StatusCode::kInvalidArg,
                    "gRPC SSL needs a server certificate and key "
                    "(--grpc-server-cert, --grpc-server-key)");
    }
    if (options_.use_mutual_auth && options_.root_cert.empty()) {
      return Status(StatusCode::kInvalidArg,
                    "gRPC mutual SSL needs the CA certificate that client "
                    "certificates must chain to (--grpc-root-cert)");
    }
    grpc::SslServerCredentialsOptions ssl(
        options_.use_mutual_auth
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ssl.pem_root_certs = options_.root_cert;
    ssl.pem_key_cert_pairs.push_back({options_.server_key, options_.server_cert});
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }

  pool_ = std::make_unique<grpcfe::WorkerPool>(
      static_cast<size_t>(options_.control_threads));

  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(target, credentials, &selected_port);
  builder.SetMaxReceiveMessageSize(INT32_MAX);
  builder.SetMaxSendMessageSize(INT32_MAX);
  // Without this a second server could silently share the port (SO_REUSEPORT)
  // instead of failing to start, as Triton does.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  for (const auto& [key, value] : options_.channel_args) {
    builder.AddChannelArgument(key, value);
  }
  builder.RegisterService(&infer_service_);
  builder.RegisterCallbackGenericService(&control_service_);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || selected_port == 0) {
    if (server != nullptr) server->Shutdown();
    pool_.reset();
    return Status(StatusCode::kUnavailable, "unable to bind to '" + target + "'");
  }
  server_ = std::move(server);
  *bound_port = selected_port;
  return Status::Ok();
}

void GrpcServer::Impl::Stop(double grace_seconds) {
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<grpcfe::WorkerPool> pool;
  {
    std::lock_guard<std::mutex> lock(mu_);
    server = std::move(server_);
    pool = std::move(pool_);
  }
  if (server == nullptr) return;
  if (grace_seconds < 0) grace_seconds = 0;
  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::microseconds(static_cast<int64_t>(grace_seconds * 1e6));
  // Past the deadline grpc cancels what is left and waits for every reactor to
  // finish; control calls still running on the pool complete normally.
  server->Shutdown(deadline);
  server->Wait();
  server.reset();
  if (pool) pool->Shutdown();
}

// ---------------------------------------------------------------------------

GrpcServer::GrpcServer(std::shared_ptr<ModelRegistry> registry, ControlHandler handler,
                       GrpcServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(registry), std::move(handler),
                                   std::move(options))) {}

GrpcServer::~GrpcServer() { Stop(0); }

Status GrpcServer::Start(const std::string& address, int port, int* bound_port) {
  return impl_->Start(address, port, bound_port);
}

void GrpcServer::Stop(double grace_seconds) { impl_->Stop(grace_seconds); }

bool GrpcServer::running() const { return impl_->running(); }

}  // namespace tritonx
