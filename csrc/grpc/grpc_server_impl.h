// GrpcServer::Impl, shared by the files that implement it: grpc_server.cc (start,
// stop, unary ModelInfer, the control plane) and grpc_stream.cc (ModelStreamInfer).
// Internal to csrc/grpc; nothing outside includes it.
#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "call_policy.h"
#include "grpc_server.h"
#include "grpc_service.grpc.pb.h"
#include "worker_pool.h"

namespace tritonx {
namespace grpcfe {

using GRPCInferenceService = inference::GRPCInferenceService;

// Only the two inference RPCs are served by this service; the others are marked
// generic so that grpc routes them to the ControlService below, which forwards
// the raw bytes to the ControlHandler. ModelInfer is taken raw and parsed here so
// that an undecodable message gets Triton's answer (INTERNAL "Unable to parse
// request") rather than grpc's bare UNIMPLEMENTED. Both inference RPCs are raw so
// that received bytes go as soon as they are parsed and large outputs are sent
// without a copy (infer_codec's SerializeInferResponse).
using InferServiceBase = GRPCInferenceService::WithRawCallbackMethod_ModelInfer<
    GRPCInferenceService::WithRawCallbackMethod_ModelStreamInfer<GRPCInferenceService::WithGenericMethod_ServerLive<
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

grpc_compression_level CompressionLevelFromName(const std::string& name);

}  // namespace grpcfe

// ---------------------------------------------------------------------------
// Thread safety: mu_ guards server_ and pool_, streams_mu_ the set of live
// streams; everything else is set before the server starts serving and only read
// while it runs.

class GrpcServer::Impl {
 public:
  Impl(std::shared_ptr<ModelRegistry> registry, ControlHandler handler,
       GrpcServerOptions options)
      : registry_(std::move(registry)),
        handler_(std::move(handler)),
        options_(std::move(options)),
        shm_(options_.shared_memory.get()),
        compression_(
            grpcfe::CompressionLevelFromName(options_.infer_compression_level)),
        infer_service_(this),
        control_service_(this) {}

  Status Start(const std::string& address, int port, int* bound_port);
  void Stop(double grace_seconds);
  void CloseStreams();  // (grpc_stream.cc)
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

  class InferService : public grpcfe::InferServiceBase {
   public:
    explicit InferService(Impl* impl) : impl_(impl) {}
    grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
    grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* ModelStreamInfer(
        grpc::CallbackServerContext* ctx) override;

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

  // The live streams (each registers itself when it starts and leaves in OnDone),
  // for CloseStreams. streams_mu_ guards both; it is taken before a stream's own
  // lock, never after it.
  std::mutex streams_mu_;
  std::unordered_set<StreamReactor*> streams_;
  bool streams_closing_ = false;
};

}  // namespace tritonx
