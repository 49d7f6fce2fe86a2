// SharedMemoryRegistry: the system and CUDA shared memory regions of one server,
// reached from Python as ServerContext.shared_memory (the control-plane handlers of
// both frontends and the Python HTTP engine's infer path).
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

// Where one output goes (host or device memory); written once, by `write`.
struct ShmTarget {
  ShmOutput target;
};

ShmKind KindOf(bool cuda) { return cuda ? ShmKind::kCuda : ShmKind::kSystem; }

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

  py::class_<ShmTarget>(m, "ShmTarget", "An output's range of a registered region")
      .def_property_readonly(
          "nbytes", [](const ShmTarget& self) { return self.target.span.byte_size; })
      .def(
          "write",
          [](const ShmTarget& self, const std::string& output, py::buffer data) {
            py::buffer_info info = data.request();
            Tensor tensor;
            tensor.name = output;
            tensor.data = static_cast<char*>(info.ptr);
            tensor.byte_size = static_cast<size_t>(info.size * info.itemsize);
            Status status;
            {
              py::gil_scoped_release release;  // a device copy blocks
              status = WriteShmOutput(self.target, tensor);
            }
            ThrowIfError(status);
          },
          py::arg("output"), py::arg("data"),
          "Copies an output's bytes into the range, with Triton's error when they "
          "do not fit");

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
      .def("__contains__", &SharedMemoryRegistry::Contains)
      .def(
          "view",
          [](const SharedMemoryRegistry& self, const std::string& name, uint64_t offset,
             uint64_t byte_size) {
            ShmBuffer buffer;
            Status status;
            {
              py::gil_scoped_release release;  // a CUDA region is copied to host
              status = self.Resolve(name, offset, byte_size, &buffer.span);
            }
            ThrowIfError(status);
            return py::memoryview(py::cast(std::move(buffer)));
          },
          py::arg("name"), py::arg("offset"), py::arg("byte_size"),
          "A memoryview of an input's range (a host copy for a CUDA region), with "
          "Triton's errors for unknown regions and ranges that leave them")
      .def(
          "output_target",
          [](const SharedMemoryRegistry& self, const std::string& name, uint64_t offset,
             uint64_t byte_size) {
            ShmTarget out;
            out.target.region = name;
            out.target.offset = offset;
            ThrowIfError(self.Resolve(name, offset, byte_size, &out.target.span,
                                      ShmUse::kWrite));
            return out;
          },
          py::arg("name"), py::arg("offset"), py::arg("byte_size"),
          "Where an output goes, with the same errors as `view`");
}

}  // namespace tritonx::bindings
