// Request and Response: what the frontends build and get back. Input bytes are not
// copied: each input holds the Python buffer it was given until the request dies.
#include "core/model.h"
#include "core/request_builder.h"
#include "core/request_parameters.h"
#include "core/shared_memory_registry.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

// Owns a Py_buffer view so that the exporter keeps the memory fixed (a bytearray
// cannot be resized while viewed); released with the GIL like any other reference.
struct BufferView {
  Py_buffer view{};
  ~BufferView() { PyBuffer_Release(&view); }
};

// Holds `data`'s buffer (not copied) for as long as the returned owner lives.
std::shared_ptr<const void> BorrowBuffer(const py::handle& data,
                                         const std::string& input, const char** bytes,
                                         size_t* size) {
  auto holder = std::make_unique<BufferView>();
  if (PyObject_GetBuffer(data.ptr(), &holder->view, PyBUF_SIMPLE) != 0) {
    PyErr_Clear();
    ThrowInvalidArg("the data of input '" + input +
                    "' is not a contiguous bytes-like object");
  }
  *bytes = static_cast<const char*>(holder->view.buf);
  *size = static_cast<size_t>(holder->view.len);
  // The BufferView must be released with the GIL: wrap it in a capsule so that the
  // deferred-release path handles it like any Python object.
  py::capsule capsule(holder.release(),
                      [](void* p) { delete static_cast<BufferView*>(p); });
  return MakePyOwner(std::move(capsule));
}

Shape ShapeFromPy(const py::handle& dims, const std::string& input) {
  const std::string what = "'shape' for input '" + input + "'";
  if (!PyTuple_Check(dims.ptr()) && !PyList_Check(dims.ptr())) {
    ThrowInvalidArg("Unable to parse " + what + ": expected a list of integers");
  }
  Shape shape;
  for (const py::handle dim : dims) shape.push_back(Int64FromPy(dim, what));
  return shape;
}

// Request parameters from a client, as given (a dict or None).
Parameters ParametersFromPy(const py::object& parameters) {
  Parameters given;
  if (parameters.is_none()) return given;
  if (!PyDict_Check(parameters.ptr())) {
    ThrowInvalidArg("Unable to parse 'parameters': expected an object");
  }
  for (const auto& [key, value] : py::reinterpret_borrow<py::dict>(parameters)) {
    std::string name = TextFromPy(key, "parameter name");
    given.emplace_back(name, ClientParameterFromPy(value, name));
  }
  return given;
}

}  // namespace

Tensor InputFromPy(const py::handle& item) {
  if (!PyTuple_Check(item.ptr()) && !PyList_Check(item.ptr())) {
    ThrowInvalidArg("an input is a (name, datatype, shape, data) tuple");
  }
  py::sequence t = py::reinterpret_borrow<py::sequence>(item);
  if (t.size() != 4) {
    ThrowInvalidArg("an input is a (name, datatype, shape, data) tuple");
  }
  Tensor tensor;
  tensor.name = TextFromPy(t[0], "input name");
  std::string datatype = TextFromPy(t[1], "'datatype' for input '" + tensor.name + "'");
  ThrowIfError(
      ParseDataType(datatype, tensor.name, WireProtocol::kNone, &tensor.dtype));
  tensor.shape = ShapeFromPy(t[2], tensor.name);
  tensor.owner = BorrowBuffer(t[3], tensor.name, &tensor.data, &tensor.byte_size);
  tensor.aliased = true;  // the caller's buffer (a BLS caller's array)
  return tensor;
}

namespace {

// Every argument is taken as a plain Python object and converted here, so that
// any value a frontend passes on from a client fails as InvalidArgumentError
// with a readable message, never as a pybind11 overload or cast error.
std::shared_ptr<PyRequest> MakeRequest(
    const py::object& id, const py::object& inputs, const py::object& requested_outputs,
    const py::object& parameters, const py::object& correlation_id, uint32_t flags,
    uint64_t timeout_us, const py::object& custom_parameters,
    const py::object& class_counts, bool device_outputs) {
  auto wrapper = std::make_shared<PyRequest>();
  wrapper->request = std::make_shared<InferenceRequest>();
  InferenceRequest& request = *wrapper->request;
  request.id = TextFromPy(id, "'id'");
  request.device_outputs_any = device_outputs;
  if (!py::isinstance<py::iterable>(inputs) || PyUnicode_Check(inputs.ptr())) {
    ThrowInvalidArg("Unable to parse 'inputs': expected a list of inputs");
  }
  for (const py::handle item : inputs) request.inputs.push_back(InputFromPy(item));
  if (!py::isinstance<py::iterable>(requested_outputs) ||
      PyUnicode_Check(requested_outputs.ptr())) {
    ThrowInvalidArg("Unable to parse 'outputs': expected a list of output names");
  }
  for (const py::handle name : requested_outputs) {
    request.requested_outputs.push_back(TextFromPy(name, "output name"));
  }
  if (!parameters.is_none()) {
    ThrowIfError(ApplyRequestParameters(ParametersFromPy(parameters), &request));
  }
  // What an in-process caller (BLS) sets through fields, as Triton's C API does:
  // no parameter carries them, so every parameter key reaches the model as given.
  if (!correlation_id.is_none()) {
    if (PyUnicode_Check(correlation_id.ptr())) {
      request.correlation_id_str = correlation_id.cast<std::string>();
    } else {
      request.correlation_id = correlation_id.cast<uint64_t>();
    }
  }
  request.flags |= flags;
  if (timeout_us != 0) request.timeout_us = timeout_us;
  if (!custom_parameters.is_none()) {
    for (const auto& [key, value] :
         py::reinterpret_borrow<py::dict>(custom_parameters)) {
      std::string name = TextFromPy(key, "parameter name");
      request.parameters.emplace_back(name, ParameterFromPy(value, name));
    }
  }
  if (!class_counts.is_none()) {
    for (const auto& [key, value] : py::reinterpret_borrow<py::dict>(class_counts)) {
      const uint32_t count = value.cast<uint32_t>();
      if (count > 0) {
        request.class_counts.emplace_back(TextFromPy(key, "output name"), count);
      }
    }
  }
  return wrapper;
}

py::list TensorList(const std::vector<Tensor>& tensors) {
  py::list out(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    out[i] = py::cast(std::make_shared<PyTensor>(PyTensor{tensors[i]}));
  }
  return out;
}

ShmReference ShmReferenceFromPy(const py::handle& ref, const std::string& tensor) {
  py::sequence t = py::reinterpret_borrow<py::sequence>(ref);
  if (t.size() != 3)
    ThrowInvalidArg("bad shared memory reference for '" + tensor + "'");
  return ShmReference{TextFromPy(t[0], "'shared_memory_region'"), t[1].cast<uint64_t>(),
                      t[2].cast<uint64_t>()};
}

// The resolved shared memory targets of one request's outputs (Python HTTP engine).
// Immutable after the build; each target holds its region mapped.
struct PyShmTargets {
  ShmOutputs targets;
};

// The Python HTTP engine's way into the request builder: inputs are (name,
// datatype, shape, kind, data) with kind "bytes" (a buffer, held; JSON `data` comes
// converted by decode_infer_json, bind_infer_json.cpp) or "shm" ((region, offset,
// byte_size)); outputs are (name, (region, offset, byte_size) | None, class_count).
py::tuple BuildRequestFromPy(const std::string& model_name, const py::object& id,
                             const py::sequence& inputs, const py::sequence& outputs,
                             const py::object& parameters, const py::object& shm,
                             const py::object& raw_parameters) {
  auto wrapper = std::make_shared<PyRequest>();
  wrapper->request = std::make_shared<InferenceRequest>();
  InferenceRequest& request = *wrapper->request;
  request.id = TextFromPy(id, "'id'");
  std::shared_ptr<SharedMemoryRegistry> registry;
  if (!shm.is_none()) registry = shm.cast<std::shared_ptr<SharedMemoryRegistry>>();
  RequestBuilder builder(&request, WireProtocol::kHttp, model_name, registry.get());
  for (const py::handle item : inputs) {
    py::sequence t = py::reinterpret_borrow<py::sequence>(item);
    InputDescription input;
    input.name = TextFromPy(t[0], "input name");
    const std::string datatype = TextFromPy(t[1], "'datatype'");
    input.datatype = datatype;
    input.shape = ShapeFromPy(t[2], input.name);
    const std::string kind = t[3].cast<std::string>();
    if (kind == "shm") {
      input.source = InputDescription::Source::kSharedMemory;
      input.shm = ShmReferenceFromPy(t[4], input.name);
    } else {
      input.owner = BorrowBuffer(t[4], input.name, &input.data, &input.byte_size);
    }
    ThrowIfError(builder.AddInput(std::move(input)));
  }
  PyShmTargets targets;
  for (const py::handle item : outputs) {
    py::sequence t = py::reinterpret_borrow<py::sequence>(item);
    OutputDescription output;
    output.name = TextFromPy(t[0], "output name");
    if (!t[1].is_none()) {
      output.to_shm = true;
      output.shm = ShmReferenceFromPy(t[1], output.name);
    }
    output.class_count = t[2].cast<uint32_t>();
    ThrowIfError(builder.AddOutput(std::move(output), &targets.targets));
  }
  ThrowIfError(builder.SetParameters(ParametersFromPy(parameters)));
  // Triton's generate passes its parameters on without reading reserved names.
  if (!raw_parameters.is_none()) {
    for (const py::handle item : raw_parameters) {
      const auto pair = py::reinterpret_borrow<py::sequence>(item);
      std::string name = TextFromPy(pair[0], "parameter name");
      ParameterValue value = ClientParameterFromPy(pair[1], name);
      request.parameters.emplace_back(std::move(name), std::move(value));
    }
  }
  py::object shm_targets = py::none();
  if (!targets.targets.empty()) shm_targets = py::cast(std::move(targets));
  return py::make_tuple(std::move(wrapper), std::move(shm_targets));
}

}  // namespace

void RegisterRequest(py::module_& m) {
  py::class_<PyRequest, std::shared_ptr<PyRequest>>(m, "Request",
                                                    "An inference request for the core")
      .def(py::init(&MakeRequest), py::arg("id") = "", py::arg("inputs") = py::tuple(),
           py::arg("requested_outputs") = py::tuple(),
           py::arg("parameters") = py::none(), py::kw_only(),
           py::arg("correlation_id") = py::none(), py::arg("flags") = 0,
           py::arg("timeout_us") = 0, py::arg("custom_parameters") = py::none(),
           py::arg("class_counts") = py::none(), py::arg("device_outputs") = false)
      .def_property_readonly("id", [](const PyRequest& r) { return r.request->id; })
      .def_property_readonly(
          "inputs", [](const PyRequest& r) { return TensorList(r.request->inputs); })
      .def_property_readonly(
          "requested_outputs",
          [](const PyRequest& r) { return r.request->requested_outputs; })
      .def_property_readonly(
          "parameters",
          [](const PyRequest& r) { return ParametersToDict(r.request->parameters); })
      .def_property_readonly("priority",
                             [](const PyRequest& r) { return r.request->priority; })
      .def_property_readonly("timeout_us",
                             [](const PyRequest& r) { return r.request->timeout_us; })
      .def_property_readonly("correlation_id",
                             [](const PyRequest& r) -> py::object {
                               if (!r.request->correlation_id_str.empty()) {
                                 return py::str(r.request->correlation_id_str);
                               }
                               return py::int_(r.request->correlation_id);
                             })
      .def_property_readonly("flags",
                             [](const PyRequest& r) { return r.request->flags; })
      .def_property_readonly("batch_size",
                             [](const PyRequest& r) { return r.request->batch_size; })
      .def_property_readonly("model_name",
                             [](const PyRequest& r) { return r.request->model_name; })
      .def_property_readonly(
          "model_version", [](const PyRequest& r) { return r.request->model_version; })
      .def_readwrite("context", &PyRequest::context)
      .def("is_cancelled", [](const PyRequest& r) { return r.request->IsCancelled(); })
      .def(
          "set_reschedule",
          [](const PyRequest& r, bool again) {
            r.request->reschedule.store(again, std::memory_order_release);
          },
          py::arg("again"),
          "Iterative sequences: run this request again in a later batch of its "
          "sequence instead of answering it now.")
      .def(
          "set_answered_by_sender",
          [](const PyRequest& r) {
            r.request->answered_by_sender.store(true, std::memory_order_release);
          },
          "A non-decoupled request answered through send_response (its model's "
          "response sender), not by execute's result.");

  py::class_<PyShmTargets>(m, "ShmTargets",
                           "The shared memory regions a request's outputs go to")
      .def("__contains__",
           [](const PyShmTargets& self, const std::string& name) {
             return FindShmOutput(self.targets, name) != nullptr;
           })
      .def(
          "write",
          [](const PyShmTargets& self, const PyTensor& tensor) {
            const ShmOutput* target = FindShmOutput(self.targets, tensor.tensor.name);
            if (target == nullptr) return;
            Status status;
            {
              py::gil_scoped_release release;  // a CUDA region's copy blocks
              status = WriteShmOutput(*target, tensor.tensor);
            }
            ThrowIfError(status);
          },
          "Copies an output into its region (INTERNAL when it does not fit)");
  m.def("build_request", &BuildRequestFromPy, py::arg("model_name"), py::arg("id"),
        py::arg("inputs"), py::arg("outputs"), py::arg("parameters"), py::arg("shm"),
        py::arg("raw_parameters") = py::none(),
        "(Request, ShmTargets | None) through the core's request builder; "
        "raw_parameters: (key, value) pairs added as they are, after `parameters`");
  m.def(
      "deduce_raw_input",
      [](const py::handle& model, const py::object& body,
         const py::object& parameters) {
        auto wrapper = std::make_shared<PyRequest>();
        wrapper->request = std::make_shared<InferenceRequest>();
        InferenceRequest& request = *wrapper->request;
        request.protocol = WireProtocol::kHttp;
        const char* data = nullptr;
        size_t size = 0;
        std::shared_ptr<const void> owner = BorrowBuffer(body, "raw", &data, &size);
        ThrowIfError(
            DeduceRawInput(ModelOf(model)->spec(), data, size, owner, &request));
        ThrowIfError(ApplyRequestParameters(ParametersFromPy(parameters), &request));
        return wrapper;
      },
      py::arg("model"), py::arg("body"), py::arg("parameters") = py::none(),
      "A request whose body is the raw bytes of the model's only input");
  m.def(
      "check_transaction_policy",
      [](const py::handle& model, const std::string& protocol) {
        ThrowIfError(CheckTransactionPolicy(
            ModelOf(model)->spec(),
            protocol == "http" ? WireProtocol::kHttp : WireProtocol::kGrpc));
      },
      py::arg("model"), py::arg("protocol"),
      "Raises UnsupportedError when the protocol's one-response endpoint cannot "
      "serve the model (decoupled)");

  py::class_<PyResponse, std::shared_ptr<PyResponse>>(m, "Response",
                                                      "A successful inference response")
      .def_property_readonly("model_name",
                             [](const PyResponse& r) { return r.response->model_name; })
      .def_property_readonly(
          "model_version",
          [](const PyResponse& r) { return std::to_string(r.response->model_version); })
      .def_property_readonly("id", [](const PyResponse& r) { return r.response->id; })
      .def_property_readonly(
          "outputs",
          [](const PyResponse& r) { return TensorList(r.response->outputs); })
      .def_property_readonly("parameters", [](const PyResponse& r) {
        return ParametersToDict(r.response->parameters);
      });
}

}  // namespace tritonx::bindings
