// Tensor: a read-only view over core tensor bytes. numpy arrays and memoryviews made
// from it keep it (and so the bytes' owner) alive through their base object.
#include <cstring>

#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

py::array AsNumpy(const py::object& self) {
  const Tensor& t = self.cast<PyTensor&>().tensor;
  if (t.dtype == DataType::kBytes) {
    // BYTES elements become Python bytes objects: a copy, as in Triton's as_numpy().
    const int64_t count = ElementCount(t.shape);
    py::array result(py::dtype("O"), t.shape);
    auto** slots = static_cast<PyObject**>(result.mutable_data());
    int64_t i = 0;
    const int64_t seen = ForEachBytesElement(
        t.data, t.byte_size,
        [&](const char* data, size_t size) {
          PyObject* item =
              PyBytes_FromStringAndSize(data, static_cast<Py_ssize_t>(size));
          if (item == nullptr) throw py::error_already_set();
          Py_XDECREF(slots[i]);
          slots[i++] = item;
        },
        count);
    if (seen != count) throw py::value_error("malformed BYTES tensor '" + t.name + "'");
    return result;
  }
  py::dtype dtype = NumpyDtype(t.dtype);
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
  // Writable like Triton's (models do `x -= mean`): the bytes are this request's own
  // copy of what the client sent (its body or gRPC message), shared with nobody else.
  return py::array(dtype, shape, {}, t.data, self);
}

}  // namespace

py::array TensorToNumpy(const py::object& tensor_obj) { return AsNumpy(tensor_obj); }

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
      .def("as_numpy", &AsNumpy)
      .def("raw", [](const py::object& self) { return py::memoryview(self); })
      .def_buffer([](PyTensor& t) {
        // Raw wire bytes, 1-D uint8, read-only.
        return py::buffer_info(const_cast<char*>(t.tensor.data), 1,
                               py::format_descriptor<uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(t.tensor.byte_size)}, {1},
                               /*readonly=*/true);
      })
      .def("__repr__", [](const PyTensor& t) {
        return "Tensor(name='" + t.tensor.name + "', datatype='" +
               std::string(DataTypeName(t.tensor.dtype)) +
               "', shape=" + ShapeToString(t.tensor.shape) + ")";
      });
}

}  // namespace tritonx::bindings
