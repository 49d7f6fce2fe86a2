// Tensor: a view over core tensor bytes. numpy arrays and memoryviews made from it
// keep it (and so the bytes' owner) alive through their base object; `raw()` is
// read-only, `as_numpy()` too where the producer's bytes are (Tensor::read_only). A GPU
// tensor is copied to host memory on its first host read (kept with the wrapper);
// DLPack hands it on without a copy (`__dlpack__`, bind_dlpack.cpp).
#include <cstring>

#include "core/cuda_runtime.h"
#include "core/tensor_memory.h"
#include "pybind_common.h"

namespace tritonx::bindings {

const Tensor& PyTensor::Host() {
  if (tensor.on_host()) return tensor;
  if (!host) {
    auto copy = std::make_shared<Tensor>();
    Status status;
    {
      py::gil_scoped_release release;  // a blocking device->host copy
      status = HostTensor(tensor, copy.get());
    }
    ThrowIfError(status);
    // Another thread may have made one meanwhile (the GIL was released): the first
    // stays, so a view made from it never loses its bytes.
    if (!host) host = std::move(copy);
  }
  return *host;
}

py::array BytesObjectArray(const char* bytes, size_t byte_size,
                           const std::vector<int64_t>& shape, std::string_view name) {
  // BYTES elements become Python bytes objects: a copy, as in Triton's as_numpy().
  const int64_t count = ElementCount(shape);
  py::array result(py::dtype("O"), shape);
  auto** slots = static_cast<PyObject**>(result.mutable_data());
  int64_t i = 0;
  const int64_t seen = ForEachBytesElement(
      bytes, byte_size,
      [&](const char* data, size_t size) {
        PyObject* item = PyBytes_FromStringAndSize(data, static_cast<Py_ssize_t>(size));
        if (item == nullptr) throw py::error_already_set();
        Py_XDECREF(slots[i]);
        slots[i++] = item;
      },
      count);
  if (seen != count) {
    throw py::value_error("malformed BYTES tensor '" + std::string(name) + "'");
  }
  return result;
}

namespace {

py::array AsNumpy(const py::object& self, bool copy) {
  if (copy && self.cast<PyTensor&>().tensor.dtype != DataType::kBytes) {
    // A private copy (what pb_utils gives a model for bytes others read too), in
    // arena memory: reused buffers, so a large input costs one memcpy per request
    // rather than fresh pages faulted in and unmapped again (measured: 1 MiB system
    // shared memory inputs, 6.4k -> 1.9k inf/s with numpy's own copy).
    Tensor own;
    {
      const Tensor& source = self.cast<PyTensor&>().tensor;
      py::gil_scoped_release release;
      ThrowIfError(PrivateHostCopy(source, &own, TensorArena::Global().get()));
    }
    return AsNumpy(py::cast(std::make_shared<PyTensor>(std::move(own))), false);
  }
  const Tensor& t = self.cast<PyTensor&>().Host();
  if (t.dtype == DataType::kBytes) {
    return BytesObjectArray(t.data, t.byte_size, t.shape, t.name);
  }
  py::dtype dtype = NumpyDtype(t.dtype);
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
  // Writable like Triton's (models do `x -= mean`), unless the bytes belong to a
  // producer that forbids writes (Tensor::read_only: a read-only numpy array or
  // DLPack 1.x capsule taken without a copy), whose memory a view must not change.
  py::array view(dtype, shape, {}, t.data, self);
  if (t.read_only) view.attr("setflags")(py::arg("write") = false);
  return view;
}

}  // namespace

py::array TensorToNumpy(const py::object& tensor_obj) {
  return AsNumpy(tensor_obj, false);
}

void RegisterTensor(py::module_& m) {
  py::class_<PyTensor, std::shared_ptr<PyTensor>>(m, "Tensor", py::buffer_protocol(),
                                                  "Read-only view of a core tensor")
      .def_property_readonly("name", [](const PyTensor& t) { return t.tensor.name; })
      .def_property_readonly(
          "datatype",
          [](const PyTensor& t) { return std::string(DataTypeName(t.tensor.dtype)); })
      .def_property_readonly("shape",
                             [](const PyTensor& t) {
                               return std::vector<int64_t>(t.tensor.shape.begin(),
                                                           t.tensor.shape.end());
                             })
      .def_property_readonly("byte_size",
                             [](const PyTensor& t) { return t.tensor.byte_size; })
      .def_property_readonly(
          "memory_type",
          [](const PyTensor& t) {
            return std::string(MemoryTypeName(t.tensor.memory_type));
          },
          "CPU, CPU_PINNED or GPU")
      .def_property_readonly("device_id",
                             [](const PyTensor& t) { return t.tensor.device_id; })
      .def_property_readonly(
          "aliased", [](const PyTensor& t) { return t.tensor.aliased; },
          "Others read these bytes too (shared memory, ensembles, a BLS caller)")
      .def("as_numpy", &AsNumpy, py::arg("copy") = false,
           "A numpy view (BYTES: an object array); copy=True: a private copy")
      .def("raw", [](const py::object& self) { return py::memoryview(self); })
      .def_buffer([](PyTensor& t) {
        // Raw wire bytes, 1-D uint8, read-only (host memory: a GPU tensor's copy).
        const Tensor& host = t.Host();
        return py::buffer_info(const_cast<char*>(host.data), 1,
                               py::format_descriptor<uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(host.byte_size)}, {1},
                               /*readonly=*/true);
      })
      .def(
          "__dlpack__",
          [](const PyTensor& t, const py::object& stream, const py::object& max_version,
             const py::object& dl_device, const py::object& copy) {
            return TensorToDLPack(t.tensor, stream, max_version, dl_device, copy);
          },
          py::kw_only(), py::arg("stream") = py::none(),
          py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
          py::arg("copy") = py::none(),
          "A DLPack capsule viewing these bytes (no copy; keeps them alive)")
      .def("__dlpack_device__",
           [](const PyTensor& t) { return TensorDLPackDevice(t.tensor); })
      .def_static(
          "from_dlpack",
          [](const std::string& name, const py::handle& producer) {
            auto wrapper = std::make_shared<PyTensor>();
            ThrowIfError(TensorFromDLPack(name, producer, &wrapper->tensor, false));
            if (!wrapper->tensor.on_host()) {
              // As Triton's from_dlpack: the producer's work on the tensor is done
              // when this returns (its stream was made to order it before the
              // device's legacy stream, which is waited for here).
              std::string error;
              {
                py::gil_scoped_release release;
                error = CudaLegacyStreamSync(wrapper->tensor.device_id);
              }
              if (!error.empty()) {
                ThrowIfError(Status(
                    StatusCode::kInternal,
                    "tensor '" + name + "': waiting for its producer: " + error));
              }
            }
            return wrapper;
          },
          py::arg("name"), py::arg("producer"),
          "A core tensor over any DLPack producer or capsule, without a copy; "
          "InvalidArgumentError for dtypes, layouts or devices it cannot hold")
      .def("__repr__", [](const PyTensor& t) {
        return "Tensor(name='" + t.tensor.name + "', datatype='" +
               std::string(DataTypeName(t.tensor.dtype)) +
               "', shape=" + ShapeToString(t.tensor.shape) + ", memory_type='" +
               MemoryTypeName(t.tensor.memory_type) + "')";
      });
}

}  // namespace tritonx::bindings
