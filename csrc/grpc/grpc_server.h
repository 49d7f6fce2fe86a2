// GrpcServer: Triton's inference.GRPCInferenceService on the grpc++ callback API.
//
// The data plane (ModelInfer, ModelStreamInfer) is handled entirely in C++:
// requests are parsed on grpc's threads, enqueued on the core's Model, and the
// responses are serialized from whichever core thread completes them, so no
// Python runs for an inference unless the backend itself is Python. Every other
// RPC (health, metadata, repository, settings, grpc.health.v1.Health/Check) is
// handed, as serialized bytes, to one ControlHandler that runs on a small pool
// of its own threads, so a slow model load never stalls inference traffic.
#pragma once

#include <grpcpp/support/status.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "call_policy.h"
#include "core/model_registry.h"
#include "core/shared_memory_registry.h"
#include "core/status.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace tritonx {

struct GrpcServerOptions {
  // Upper bound on the threads running ControlHandler calls at once; threads
  // are started on demand.
  int control_threads = 8;
  // Compression of ModelInfer responses: "none", "low", "medium" or "high".
  std::string infer_compression_level = "none";
  // Extra integer channel arguments (keepalive settings and the like;
  // "grpc.so_reuseport" = 1 lets several servers share the port, default 0).
  std::vector<std::pair<std::string, int>> channel_args;
  // TLS. All three PEM strings are file contents, not paths.
  bool use_ssl = false;
  bool use_mutual_auth = false;
  std::string server_cert;
  std::string server_key;
  std::string root_cert;
  // --grpc-restricted-protocol groups and --grpc-header-forward-pattern; see
  // call_policy.h. Checked by Start, which fails on an invalid entry.
  std::vector<grpcfe::RestrictedProtocol> restricted_protocols;
  std::string header_forward_pattern;
  // The server's system shared memory regions, for tensors that name one; null:
  // such tensors are refused.
  std::shared_ptr<SharedMemoryRegistry> shared_memory;
  // A ModelStreamInfer stream whose responses waiting to be written (its client
  // does not read them) would pass this many bytes is cancelled, with its requests
  // in flight; 0: no bound (as Triton). See grpc_stream.cc.
  size_t max_stream_backlog_bytes = size_t{1} << 30;
};

// Thread safety: Start, Stop, CloseStreams and running may be called from any
// thread (CloseStreams also while Stop waits on another); calls
// are served on grpc's threads and the control pool. Ownership: the caller owns
// the server; it shares the registry and copies the handler.
class GrpcServer {
 public:
  // Answers a control-plane RPC. `method` is the full gRPC path, e.g.
  // "/inference.GRPCInferenceService/ServerLive"; `request` and `*response`
  // are serialized protobuf messages. Called from the server's own threads,
  // possibly several at once.
  using ControlHandler = std::function<grpc::Status(
      const std::string& method, const std::string& request, std::string* response)>;

  GrpcServer(std::shared_ptr<ModelRegistry> registry, ControlHandler handler,
             GrpcServerOptions options = {});
  ~GrpcServer();  // Stop(0)
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Binds `address:port` (port 0 picks a free one) and starts serving. On
  // success `*bound_port` is the port actually bound.
  Status Start(const std::string& address, int port, int* bound_port);

  // Stops accepting calls, lets in-flight ones finish for up to
  // `grace_seconds`, then cancels the rest and waits for them to unwind.
  // Blocking; idempotent.
  void Stop(double grace_seconds);

  // Ends every stream (UNAVAILABLE "Server is shutting down") once the requests
  // in flight on it are answered, an idle one at once, and refuses new streams:
  // for a shutdown, once nothing is in flight any more, so that clients keeping
  // a stream open do not hold it for the rest of Stop's grace period. Until then
  // a stream still takes requests (a sequence may complete), as in Triton.
  void CloseStreams();

  bool running() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tritonx
