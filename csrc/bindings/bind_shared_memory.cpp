// SharedMemoryRegistry: the system shared memory regions of one server, reached
// from Python as ServerContext.shared_memory (the control-plane handlers of both
// frontends and the Python HTTP engine's infer path).
#include "core/shared_memory_registry.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

// A writable buffer over a range of a region; holds the mapping for as long as any
// memoryview of it lives, so unregistering the region never invalidates it.
// Immutable once made (the bytes it points at are the client's to change).
struct ShmBuffer {
  ShmSpan span;
};

}  // namespace

void RegisterSharedMemory(py::module_& m) {
  py::class_<ShmBuffer>(m, "ShmBuffer", py::buffer_protocol(),
                        "A range of a registered shared memory region")
      .def_buffer([](ShmBuffer& self) {
        return py::buffer_info(self.span.data, 1,
                               py::format_descriptor<uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(self.span.byte_size)}, {1},
                               /*readonly=*/false);
      });

  py::class_<SharedMemoryRegistry, std::shared_ptr<SharedMemoryRegistry>>(
      m, "SharedMemoryRegistry", "Registered system shared memory regions")
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
          "unregister",
          [](SharedMemoryRegistry& self, const std::string& name) {
            py::gil_scoped_release release;  // the last reference unmaps
            if (name.empty()) {
              self.UnregisterAll();
            } else {
              self.Unregister(name);
            }
          },
          py::arg("name") = "", "One region, or every region when `name` is empty")
      .def(
          "status",
          [](const SharedMemoryRegistry& self, const std::string& name) {
            std::vector<ShmRegionStatus> regions;
            ThrowIfError(self.GetStatus(name, &regions));
            py::list out;
            for (const auto& region : regions) {
              py::dict entry;
              entry["name"] = region.name;
              entry["key"] = region.key;
              entry["offset"] = region.offset;
              entry["byte_size"] = region.byte_size;
              out.append(entry);
            }
            return out;
          },
          py::arg("name") = "")
      .def("__contains__", &SharedMemoryRegistry::Contains)
      .def(
          "view",
          [](const SharedMemoryRegistry& self, const std::string& name, uint64_t offset,
             uint64_t byte_size) {
            ShmBuffer buffer;
            ThrowIfError(self.Resolve(name, offset, byte_size, &buffer.span));
            return py::memoryview(py::cast(std::move(buffer)));
          },
          py::arg("name"), py::arg("offset"), py::arg("byte_size"),
          "A writable memoryview of the range, with Triton's errors for unknown "
          "regions and ranges that leave them");
}

}  // namespace tritonx::bindings
