// GrpcServer: the C++ gRPC frontend, driven from tritonx.frontends.grpc. Python is
// involved only through the control-plane handler; inference never enters Python
// here (a Python backend is reached through the core's executor instead).
#include "core/model_registry.h"
#include "grpc_server.h"
#include "infer_codec.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

// The gRPC status for a Python exception raised by the control handler: a
// TritonXError keeps its code (mapped by the one status table), anything else is
// INTERNAL.
grpc::Status StatusFromHandlerError(py::error_already_set& err) {
  return grpcfe::ToGrpcStatus(StatusFromPyException(err.value()));
}

// Owns the Python handler for exactly as long as the server may call it, and
// stops the server with the GIL released when Python drops the object.
class PyGrpcServer {
 public:
  PyGrpcServer(std::shared_ptr<ModelRegistry> registry, py::object handler,
               GrpcServerOptions options)
      : handler_(std::move(handler)) {
    PyObject* fn = handler_.ptr();  // kept alive by handler_, which outlives server_
    server_ = std::make_unique<GrpcServer>(
        std::move(registry),
        [fn](const std::string& method, const std::string& request,
             std::string* response) -> grpc::Status {
          GilAcquire gil;
          try {
            py::object result =
                py::reinterpret_borrow<py::object>(fn)(method, py::bytes(request));
            if (!py::isinstance<py::bytes>(result) &&
                py::hasattr(result, "SerializeToString")) {
              result = result.attr("SerializeToString")();
            }
            *response = result.cast<std::string>();
            return grpc::Status::OK;
          } catch (py::error_already_set& err) {
            return StatusFromHandlerError(err);
          } catch (const std::exception& err) {
            return grpc::Status(grpc::StatusCode::INTERNAL, err.what());
          }
        },
        std::move(options));
  }

  ~PyGrpcServer() {
    // Stopping waits for control calls in flight, which need the GIL.
    py::gil_scoped_release release;
    server_.reset();
  }

  int Start(const std::string& address, int port) {
    int bound = 0;
    Status status;
    {
      // Binding may take a moment and must not hold up the event loop's other
      // threads; nothing here touches Python.
      py::gil_scoped_release release;
      status = server_->Start(address, port, &bound);
    }
    ThrowIfError(status);
    return bound;
  }

  void Stop(double grace) {
    // Shutdown waits for in-flight RPCs, including control calls that need the
    // GIL to finish, so it must not be held here.
    py::gil_scoped_release release;
    server_->Stop(grace);
  }

  void CloseStreams() {
    // Waits only for the streams' locks, which grpc and core threads hold briefly
    // and never while taking the GIL; released anyway, as around any C++ wait.
    py::gil_scoped_release release;
    server_->CloseStreams();
  }

  bool running() const { return server_->running(); }

 private:
  py::object handler_;
  std::unique_ptr<GrpcServer> server_;
};

}  // namespace
}  // namespace tritonx::bindings

void RegisterGrpc(pybind11::module_& m) {
  using tritonx::GrpcServerOptions;
  using tritonx::ModelRegistry;
  using tritonx::SharedMemoryRegistry;
  using tritonx::bindings::PyGrpcServer;
  py::class_<PyGrpcServer>(m, "GrpcServer",
                           "Triton's inference.GRPCInferenceService served from C++")
      .def(py::init(
               [](std::shared_ptr<ModelRegistry> registry, py::object handler,
                  int control_threads, const std::string& infer_compression_level,
                  const std::map<std::string, int>& channel_args, bool use_ssl,
                  bool use_mutual_auth, const std::string& server_cert,
                  const std::string& server_key, const std::string& root_cert,
                  const std::vector<std::tuple<std::string, std::string, std::string>>&
                      restricted_protocols,
                  const std::string& header_forward_pattern,
                  std::shared_ptr<SharedMemoryRegistry> shared_memory,
                  size_t max_stream_backlog_bytes) {
                 if (!registry) throw py::value_error("registry must not be None");
                 if (!PyCallable_Check(handler.ptr())) {
                   throw py::type_error("handler must be callable");
                 }
                 GrpcServerOptions options;
                 options.control_threads = control_threads;
                 options.infer_compression_level = infer_compression_level;
                 options.channel_args.assign(channel_args.begin(), channel_args.end());
                 options.use_ssl = use_ssl;
                 options.use_mutual_auth = use_mutual_auth;
                 options.server_cert = server_cert;
                 options.server_key = server_key;
                 options.root_cert = root_cert;
                 for (const auto& [group, header, value] : restricted_protocols) {
                   options.restricted_protocols.push_back({group, header, value});
                 }
                 options.header_forward_pattern = header_forward_pattern;
                 options.shared_memory = std::move(shared_memory);
                 options.max_stream_backlog_bytes = max_stream_backlog_bytes;
                 return std::make_unique<PyGrpcServer>(
                     std::move(registry), std::move(handler), std::move(options));
               }),
           py::arg("registry"), py::arg("handler"), py::kw_only(),
           py::arg("control_threads") = 8, py::arg("infer_compression_level") = "none",
           py::arg("channel_args") = std::map<std::string, int>(),
           py::arg("use_ssl") = false, py::arg("use_mutual_auth") = false,
           py::arg("server_cert") = "", py::arg("server_key") = "",
           py::arg("root_cert") = "",
           py::arg("restricted_protocols") =
               std::vector<std::tuple<std::string, std::string, std::string>>(),
           py::arg("header_forward_pattern") = "",
           py::arg("shared_memory") = std::shared_ptr<tritonx::SharedMemoryRegistry>(),
           // (The C++ default, so that it is stated once on this side.)
           py::arg("max_stream_backlog_bytes") =
               GrpcServerOptions().max_stream_backlog_bytes)
      .def("start", &PyGrpcServer::Start, py::arg("address"), py::arg("port"),
           "Binds and starts serving; returns the bound port (port 0 picks one).")
      .def("stop", &PyGrpcServer::Stop, py::arg("grace") = 0.0,
           "Stops accepting, waits up to `grace` seconds for in-flight calls, then "
           "cancels the rest. Blocking; idempotent.")
      .def("close_streams", &PyGrpcServer::CloseStreams,
           "Ends every stream once its requests in flight are answered (an idle "
           "one at once) and refuses new ones: for a shutdown, once nothing is in "
           "flight, while `stop` waits out its grace.")
      .def_property_readonly("running", &PyGrpcServer::running);
}
