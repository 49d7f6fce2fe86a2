#include "grpc_server.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <deque>
#include <unordered_map>

#include "core/logging.h"
#include "core/request_builder.h"
#include "core/trace.h"
#include "grpc_process.h"
#include "grpc_server_impl.h"
#include "grpc_service.grpc.pb.h"
#include "infer_codec.h"
#include "received_request.h"
#include "worker_pool.h"

namespace tritonx {
namespace {

using inference::ModelInferRequest;
using inference::ModelInferResponse;
using inference::ModelStreamInferResponse;

// ---------------------------------------------------------------------------
// ModelInfer messages outlive the RPC when they must: the input tensors point
// into the request message, and a request may still sit in a backend after
// the client has gone away. The tensors hold their own reference to them.

struct InferMessages {
  grpcfe::ReceivedInferRequest request;
  ModelInferResponse response;
  ShmOutputs shm_outputs;  // outputs the client wants written into its regions
};

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

}  // namespace

namespace grpcfe {
grpc_compression_level CompressionLevelFromName(const std::string& name) {
  if (name == "low") return GRPC_COMPRESS_LEVEL_LOW;
  if (name == "medium") return GRPC_COMPRESS_LEVEL_MED;
  if (name == "high") return GRPC_COMPRESS_LEVEL_HIGH;
  return GRPC_COMPRESS_LEVEL_NONE;
}
}  // namespace grpcfe

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
    // Either way the response callback still runs and calls Finish. Logged (verbose)
    // in the words Triton's gRPC frontend uses for it.
    Log(LogLevel::kVerbose,
        "Cancellation notification received for ModelInferHandler, model '" +
            model_->spec().name + "'");
    model_->Cancel(request_);
  }
  void OnDone() override {
    // The response is sent: the request (and its trace, if sampled) goes with us.
    if (RequestTrace* trace = request_->trace.get()) {
      trace->Record(trace_activity::kGrpcSendEnd);
    }
    delete this;
  }
  RequestTrace* trace() const { return request_->trace.get(); }

  // OnDone and OnCancel may run on whichever grpc thread completes the call rather
  // than being handed to grpc's executor thread: that hand-off woke a thread for
  // every RPC. Both are short and never block on the network: OnDone records a
  // trace point and deletes; OnCancel takes the scheduler's lock to drop a queued
  // request, whose callback then only starts grpc's Finish.
  bool InternalInlineable() override { return true; }

 private:
  std::shared_ptr<Model> model_;
  RequestPtr request_;
};

grpc::ServerUnaryReactor* GrpcServer::Impl::InferService::ModelInfer(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request_buffer,
    grpc::ByteBuffer* response_buffer) {
  const uint64_t received_ns = NowNs();  // for a trace: GRPC_WAITREAD_START
  auto fail = [ctx](const grpc::Status& status) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  };

  // Tensors borrow the request message's bytes; `messages` keeps them valid for
  // as long as the core holds the request.
  auto messages = std::make_shared<InferMessages>();
  const ModelInferRequest* request = &messages->request.message;
  // Triton parses before it checks the protocol restriction. gRPC does not read a
  // request again once it has handed it over, only destroys it: its bytes can go
  // as soon as they are parsed.
  if (!grpcfe::ParseReceivedInferRequest(const_cast<grpc::ByteBuffer*>(request_buffer),
                                         &messages->request)) {
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
  status = CheckTransactionPolicy(model->spec(), WireProtocol::kGrpc);
  if (!status.ok()) return fail(grpcfe::ToGrpcStatus(status));

  auto infer_request = std::make_shared<InferenceRequest>();
  status = grpcfe::BuildInferenceRequest(*request, messages->request.raw_inputs,
                                         messages, &model->spec(), infer_request.get(),
                                         impl_->shm_, &messages->shm_outputs);
  if (!status.ok()) return fail(grpcfe::ToGrpcStatus(status));
  if (policy.forwards_headers()) {
    policy.ForwardHeaders(ctx->client_metadata(), &infer_request->parameters);
  }
  infer_request->protocol = InferenceRequest::Protocol::kGrpc;
  infer_request->recv_start_ns = received_ns;
  if (model->Tracing()) {
    infer_request->recv_end_ns = NowNs();
    grpcfe::ReadTraceContext(ctx->client_metadata(), infer_request.get());
  }

  if (impl_->compression_ != GRPC_COMPRESS_LEVEL_NONE) {
    ctx->set_compression_level(impl_->compression_);
  }

  auto* reactor = new InferReactor(model, infer_request);
  infer_request->SetResponseCallback(
      [reactor, messages, response_buffer](std::unique_ptr<InferenceResponse> result) {
        if (RequestTrace* trace = reactor->trace()) {
          trace->Record(trace_activity::kGrpcSendStart);
        }
        if (!result->status.ok()) {
          reactor->Finish(grpcfe::ToGrpcStatus(result->status));
          return;
        }
        Status built = grpcfe::SerializeInferResponse(
            std::move(result), messages->request.message.id(), &messages->shm_outputs,
            &messages->response, response_buffer);
        reactor->Finish(built.ok() ? grpc::Status::OK : grpcfe::ToGrpcStatus(built));
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
      static_cast<size_t>(options_.control_threads), 0, "gRPC control");
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    streams_closing_ = false;  // (a server started again after a Stop)
  }

  grpcfe::TurnOffAbslDeadlockDetection();
  grpcfe::KeepGrpcForProcess();
  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(target, credentials, &selected_port);
  builder.SetMaxReceiveMessageSize(INT32_MAX);
  builder.SetMaxSendMessageSize(INT32_MAX);
  // grpc shares ports (SO_REUSEPORT) unless told not to; as in Triton a second
  // server on the port fails to start unless the options ask for sharing
  // (--reuse-grpc-port).
  bool reuse_port_chosen = false;
  for (const auto& [key, value] : options_.channel_args) {
    builder.AddChannelArgument(key, value);
    reuse_port_chosen = reuse_port_chosen || key == GRPC_ARG_ALLOW_REUSEPORT;
  }
  if (!reuse_port_chosen) builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&infer_service_);
  builder.RegisterCallbackGenericService(&control_service_);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || selected_port == 0) {
    if (server != nullptr) server->Shutdown();
    pool_.reset();
    // grpc does not say why; a port in use is the usual cause, and tritonserver
    // says this (trailing blank included) for any failed bind.
    return Status(StatusCode::kUnavailable, "Socket '" + target + "' already in use ");
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

void GrpcServer::CloseStreams() { impl_->CloseStreams(); }

bool GrpcServer::running() const { return impl_->running(); }

}  // namespace tritonx
