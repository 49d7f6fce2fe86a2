// SharedMemoryRegistry: the system and CUDA shared memory regions of one server,
// reached from Python as ServerContext.shared_memory (the control-plane handlers of
// both frontends; the Python HTTP engine's infer path hands it to the request
// builder, bind_request.cpp).
#include "core/shared_memory_registry.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

ShmKind KindOf(bool cuda) { return cuda ? ShmKind::kCuda : ShmKind::kSystem; }

}  // namespace

void RegisterSharedMemory(py::module_& m) {
  py::class_<SharedMemoryRegistry, std::shared_ptr<SharedMemoryRegistry>>(
      m, "SharedMemoryRegistry", "Registered system and CUDA shared memory regions")
      .def_property("allowed", &SharedMemoryRegistry::allowed,
                    &SharedMemoryRegistry::set_allowed,
                    "Whether clients may use shared memory (--allow-client-shm)")
      .def(
          "register",
          [](SharedMemoryRegistry& self, const std::string& name,
             const std::string& key, uint64_t offset, uint64_t byte_size) {
            Status status;
            {
              py::gil_scoped_release release;  // opening and mapping may block
              status = self.Register(name, key, offset, byte_size);
            }
            ThrowIfError(status);
          },
          py::arg("name"), py::arg("key"), py::arg("offset"), py::arg("byte_size"))
      .def(
          "register_cuda",
          [](SharedMemoryRegistry& self, const std::string& name, py::bytes raw_handle,
             int64_t device_id, uint64_t byte_size) {
            std::string handle = raw_handle;
            Status status;
            {
              py::gil_scoped_release release;  // opening the IPC handle may block
              status = self.RegisterCuda(name, handle, device_id, byte_size);
            }
            ThrowIfError(status);
          },
          py::arg("name"), py::arg("raw_handle"), py::arg("device_id"),
          py::arg("byte_size"), "A peer's cudaIpcMemHandle_t (64 bytes) on a device")
      .def(
          "unregister",
          [](SharedMemoryRegistry& self, const std::string& name, bool cuda) {
            py::gil_scoped_release release;  // the last reference unmaps
            if (name.empty()) {
              self.UnregisterAll(KindOf(cuda));
            } else {
              self.Unregister(name, KindOf(cuda));
            }
          },
          py::arg("name") = "", py::arg("cuda") = false,
          "One region of the kind, or every one when `name` is empty")
      .def(
          "status",
          [](const SharedMemoryRegistry& self, const std::string& name, bool cuda) {
            std::vector<ShmRegionStatus> regions;
            ThrowIfError(self.GetStatus(name, &regions, KindOf(cuda)));
            py::list out;
            for (const auto& region : regions) {
              py::dict entry;
              entry["name"] = region.name;
              if (cuda) {
                entry["device_id"] = region.device_id;
              } else {
                entry["key"] = region.key;
                entry["offset"] = region.offset;
              }
              entry["byte_size"] = region.byte_size;
              out.append(entry);
            }
            return out;
          },
          py::arg("name") = "", py::arg("cuda") = false)
      .def("__contains__", &SharedMemoryRegistry::Contains);
}

}  // namespace tritonx::bindings
