// tritonx._C: wires the per-component binding files together and nothing else.
#include "pybind_common.h"

namespace tritonx::bindings {
void RegisterTensor(py::module_& m);
void RegisterRequest(py::module_& m);
void RegisterModelSettings(py::module_& m);
void RegisterModel(py::module_& m);
void RegisterRegistry(py::module_& m);
void RegisterArena(py::module_& m);
void RegisterSharedMemory(py::module_& m);
void RegisterEnsemble(py::module_& m);
void RegisterSequence(py::module_& m);
void RegisterCuda(py::module_& m);
void RegisterPerf(py::module_& m);
void RegisterTrace(py::module_& m);
void RegisterStub(py::module_& m);
void RegisterTables(py::module_& m);
void RegisterInferJson(py::module_& m);
}  // namespace tritonx::bindings

#ifdef TRITONX_ENABLE_GRPC
void RegisterGrpc(pybind11::module_& m);
#endif
#ifdef TRITONX_ENABLE_HTTP
namespace tritonx::bindings {
void RegisterHttp(py::module_& m);
}
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "tritonx C++ core: requests, scheduling, batching, tensor arena, gRPC";
  using namespace tritonx::bindings;
  RegisterTensor(m);
  RegisterRequest(m);
  RegisterModelSettings(m);
  RegisterModel(m);
  RegisterRegistry(m);
  RegisterArena(m);
  RegisterSharedMemory(m);
  RegisterEnsemble(m);
  RegisterSequence(m);
  RegisterCuda(m);
  RegisterPerf(m);
  RegisterTrace(m);
  RegisterStub(m);
  RegisterTables(m);
  RegisterInferJson(m);
#ifdef TRITONX_ENABLE_GRPC
  RegisterGrpc(m);
  m.attr("grpc_built") = true;
#else
  m.attr("grpc_built") = false;
#endif
#ifdef TRITONX_ENABLE_HTTP
  RegisterHttp(m);
#endif
}
