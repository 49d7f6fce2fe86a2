// The Python HTTP engine's way into the infer and generate JSON walks both HTTP
// engines share (core/infer_json.h, core/generate_json.h): Python's json module parses
// (builds without RapidJSON), this file walks the objects it made with the same checks
// and messages as the native engine, and hands back the request builder's descriptions
// as Python values, so that the walk can run in a helper process (the builder needs the
// server's shared memory registry and runs in the server process, through
// build_request).
#include <cmath>
#include <string>
#include <unordered_set>

#include "core/generate_json.h"
#include "core/infer_json.h"
#include "core/model.h"
#include "core/model_spec.h"
#include "core/request_builder.h"
#include "py_json_sink.h"
#include "pybind_common.h"

namespace tritonx::bindings {

py::tuple ShmTuple(const ShmReference& ref) {
  return py::make_tuple(ref.region, ref.offset, ref.byte_size);
}

Status DescriptionSink::AddInput(InputDescription input, size_t offset) {
  if (!names_.insert(input.name).second) return InputAlreadyExists(id, input.name);
  Input out;
  out.source = input.source;
  if (input.source == InputDescription::Source::kSharedMemory) {
    out.shm = std::move(input.shm);
  } else if (input.source == InputDescription::Source::kBytes) {
    out.offset = offset;
    out.size = input.byte_size;
  } else {
    DataType dtype = DataType::kInvalid;
    Status status =
        ParseDataType(input.datatype, input.name, WireProtocol::kHttp, &dtype);
    if (status.ok())
      status = JsonDataToWire(input.name, dtype, input.shape, input, &out.wire);
    if (!status.ok()) return status;
  }
  out.name = std::move(input.name);
  out.datatype = std::string(input.datatype);
  out.shape = std::move(input.shape);
  inputs.push_back(std::move(out));
  return Status::Ok();
}

Status DescriptionSink::AddOutput(OutputDescription output, int binary) {
  outputs.push_back({std::move(output), binary});
  return Status::Ok();
}

namespace {

// JSON `data` converted to wire bytes, handed to build_request without a copy: a
// 3M-value tensor's 12 MB would otherwise be copied, and its fresh pages touched,
// with the GIL held (~7 ms here). Pickles as bytes (JSON helper processes).
// Immutable; owns its bytes.
struct WireBytes {
  std::string bytes;
};

}  // namespace

py::list InputsToPy(DescriptionSink& sink) {
  py::list inputs;
  for (DescriptionSink::Input& input : sink.inputs) {
    py::list shape;
    for (int64_t dim : input.shape) shape.append(dim);
    py::object data;
    const char* kind = "bytes";
    if (input.source == InputDescription::Source::kSharedMemory) {
      kind = "shm";
      data = ShmTuple(input.shm);
    } else if (input.source == InputDescription::Source::kBytes) {
      data = py::reinterpret_steal<py::object>(
          PySlice_New(py::int_(input.offset).ptr(),
                      py::int_(input.offset + input.size).ptr(), nullptr));
    } else {
      data = py::cast(WireBytes{std::move(input.wire)});
    }
    inputs.append(py::make_tuple(input.name, input.datatype, shape, kind, data));
  }
  return inputs;
}

py::list OutputsToPy(const DescriptionSink& sink) {
  py::list outputs;
  for (const DescriptionSink::Output& output : sink.outputs) {
    const OutputDescription& o = output.description;
    py::object shm = o.to_shm ? py::object(ShmTuple(o.shm)) : py::none();
    outputs.append(py::make_tuple(o.name, shm, o.class_count));
  }
  return outputs;
}

py::dict BinaryOutputsToPy(const DescriptionSink& sink) {
  py::dict flags;
  for (const DescriptionSink::Output& output : sink.outputs) {
    if (output.binary >= 0) {
      flags[py::str(output.description.name)] = py::bool_(output.binary == 1);
    }
  }
  return flags;
}

ModelSpec GenerateSpecFromPy(const py::tuple& given) {
  ModelSpec spec;
  spec.name = given[0].cast<std::string>();
  spec.max_batch_size = given[1].cast<int32_t>();
  for (const py::handle item : given[2].cast<py::tuple>()) {
    const auto input = item.cast<py::tuple>();
    TensorSpec tensor;
    tensor.name = input[0].cast<std::string>();
    tensor.dtype = DataTypeFromName(input[1].cast<std::string>());
    for (const py::handle dim : input[2].cast<py::tuple>()) {
      tensor.dims.push_back(dim.cast<int64_t>());
    }
    spec.inputs.push_back(std::move(tensor));
  }
  return spec;
}

py::tuple GenerateDecoded(DescriptionSink& sink, const Parameters& params) {
  py::list parameters;
  for (const auto& [key, value] : params) {
    parameters.append(py::make_tuple(key, ParameterToPy(value)));
  }
  return py::make_tuple(py::str(sink.id), InputsToPy(sink), parameters);
}

py::tuple InferDecoded(DescriptionSink& sink, const Parameters& params,
                       const Status& status) {
  py::object parameters = py::none();
  if (status.ok() && !params.empty()) parameters = ParametersToDict(params);
  py::object error = status.ok() ? py::object(py::none()) : MakeError(status);
  return py::make_tuple(py::str(sink.id), sink.default_binary, InputsToPy(sink),
                        OutputsToPy(sink), BinaryOutputsToPy(sink), parameters, error);
}

namespace {

// Integers past 64 bits are doubles, as RapidJSON reads them.
double PyNumberAsDouble(PyObject* v) {
  if (PyFloat_Check(v)) return PyFloat_AS_DOUBLE(v);
  const double d = PyLong_AsDouble(v);
  if (d == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();  // past a double's range
    const bool negative = PyObject_RichCompareBool(v, py::int_(0).ptr(), Py_LT) == 1;
    return negative ? -HUGE_VAL : HUGE_VAL;
  }
  return d;
}

// JSON `data` decoded by Python's json module, as the builder's typed leaves.
// Strings point into the str objects (their cached UTF-8), which the document keeps
// alive while the input is converted.
Status FlattenPyJson(PyObject* list, std::vector<JsonScalar>* out);

// The JSON reader infer_json.h walks, over what json.loads returns (dict, list, str,
// int, float, bool, None). Nodes are borrowed from the document, which the caller
// holds for the walk; the GIL is held throughout.
struct PyJsonReader {
  using Value = PyObject*;
  static JsonKind Kind(Value v) {
    if (PyBool_Check(v)) return JsonKind::kBool;
    if (PyLong_Check(v)) {
      int overflow = 0;
      PyLong_AsLongLongAndOverflow(v, &overflow);
      if (overflow == 0) return JsonKind::kInt;
      if (overflow > 0) {
        PyLong_AsUnsignedLongLong(v);
        if (!PyErr_Occurred()) return JsonKind::kUint;
        PyErr_Clear();
      }
      return JsonKind::kDouble;
    }
    if (PyFloat_Check(v)) return JsonKind::kDouble;
    if (PyUnicode_Check(v)) return JsonKind::kString;
    if (PyList_Check(v)) return JsonKind::kArray;
    if (PyDict_Check(v)) return JsonKind::kObject;
    return JsonKind::kNull;
  }
  static bool Bool(Value v) { return v == Py_True; }
  static int64_t Int(Value v) { return PyLong_AsLongLong(v); }
  static uint64_t Uint(Value v) { return PyLong_AsUnsignedLongLong(v); }
  static double Double(Value v) { return PyNumberAsDouble(v); }
  static Status Text(Value v, std::string_view* out) {
    Py_ssize_t size = 0;
    const char* text = PyUnicode_AsUTF8AndSize(v, &size);
    if (text == nullptr) {
      PyErr_Clear();  // a lone surrogate escape: not UTF-8
      return InvalidSurrogate();
    }
    *out = std::string_view(text, static_cast<size_t>(size));
    return Status::Ok();
  }
  static bool Find(Value obj, const char* key, Value* out) {
    *out = PyDict_GetItemString(obj, key);
    return *out != nullptr;
  }
  static size_t Size(Value v) {
    return static_cast<size_t>(PyList_Check(v) ? PyList_GET_SIZE(v) : PyDict_Size(v));
  }
  template <class F>
  static Status Elements(Value array, F f) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(array); ++i) {
      Status status = f(PyList_GET_ITEM(array, i));
      if (!status.ok()) return status;
    }
    return Status::Ok();
  }
  template <class F>
  static Status Members(Value obj, F f) {
    Py_ssize_t pos = 0;
    PyObject* key = nullptr;
    PyObject* value = nullptr;
    while (PyDict_Next(obj, &pos, &key, &value)) {
      std::string_view name;
      Status status = Text(key, &name);
      if (status.ok()) status = f(name, value);
      if (!status.ok()) return status;
    }
    return Status::Ok();
  }
  static Status DataLeaves(Value data, InputDescription* input) {
    input->source = InputDescription::Source::kJson;
    input->json_is_array = PyList_Check(data);
    return input->json_is_array ? FlattenPyJson(data, &input->json) : Status::Ok();
  }
};

Status FlattenPyJson(PyObject* list, std::vector<JsonScalar>* out) {
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); ++i) {
    PyObject* item = PyList_GET_ITEM(list, i);
    JsonScalar leaf;
    switch (PyJsonReader::Kind(item)) {
      case JsonKind::kArray: {
        Status status = FlattenPyJson(item, out);
        if (!status.ok()) return status;
        continue;
      }
      case JsonKind::kBool:
        leaf.type = JsonScalar::Type::kBool;
        leaf.b = PyJsonReader::Bool(item);
        break;
      case JsonKind::kInt:
        leaf.type = JsonScalar::Type::kInt;
        leaf.i = PyJsonReader::Int(item);
        break;
      case JsonKind::kUint:
        leaf.type = JsonScalar::Type::kUint;
        leaf.u = PyJsonReader::Uint(item);
        break;
      case JsonKind::kDouble:
        leaf.type = JsonScalar::Type::kDouble;
        leaf.d = PyJsonReader::Double(item);
        break;
      case JsonKind::kString: {
        Status status = PyJsonReader::Text(item, &leaf.text);
        if (!status.ok()) return status;
        leaf.type = JsonScalar::Type::kString;
        break;
      }
      default:
        break;
    }
    out->push_back(leaf);
  }
  return Status::Ok();
}

// True when some string of `v` (key or value) is not UTF-8: RapidJSON refuses a
// lone surrogate escape while parsing, before any other check, so the Python engine
// looks for one first too (only when the text has a `\ud` escape at all).
bool HasLoneSurrogate(PyObject* v) {
  if (PyUnicode_Check(v)) {
    if (PyUnicode_AsUTF8AndSize(v, nullptr) != nullptr) return false;
    PyErr_Clear();
    return true;
  }
  if (PyList_Check(v)) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); ++i) {
      if (HasLoneSurrogate(PyList_GET_ITEM(v, i))) return true;
    }
  } else if (PyDict_Check(v)) {
    Py_ssize_t pos = 0;
    PyObject* key = nullptr;
    PyObject* value = nullptr;
    while (PyDict_Next(v, &pos, &key, &value)) {
      if (HasLoneSurrogate(key) || HasLoneSurrogate(value)) return true;
    }
  }
  return false;
}

bool MentionsSurrogate(std::string_view text) {
  for (size_t i = 0; i + 2 < text.size(); ++i) {
    if (text[i] == '\\' && text[i + 1] == 'u' && (text[i + 2] | 0x20) == 'd')
      return true;
  }
  return false;
}

// The text of `body` has a lone surrogate escape where `doc` (json.loads of it) holds
// it: RapidJSON's refusal, made first, as its parse would.
bool LoneSurrogateIn(const py::buffer& body, const py::object& doc) {
  py::buffer_info info = body.request();
  const std::string_view text(static_cast<const char*>(info.ptr),
                              static_cast<size_t>(info.size * info.itemsize));
  return MentionsSurrogate(text) && HasLoneSurrogate(doc.ptr());
}

py::tuple DecodeInferJsonFromPy(const py::object& doc, const py::buffer& header,
                                const py::object& header_length, size_t body_size,
                                const std::string& model) {
  DescriptionSink sink;
  Parameters params;
  InferBodyLayout layout;
  layout.has_header_length = !header_length.is_none();
  layout.header_length = layout.has_header_length ? header_length.cast<size_t>() : 0;
  layout.body_size = body_size;
  Status status;
  if (LoneSurrogateIn(header, doc)) status = InvalidSurrogate();
  if (status.ok()) {
    status = DecodeInferJson<PyJsonReader>(doc.ptr(), layout, model, &sink, &params);
  }
  return InferDecoded(sink, params, status);
}

// What generate's walk needs of a model, as plain values that a JSON helper process
// can take: (model name, max_batch_size, ((input, datatype, dims), ...)).
py::tuple GenerateSpecOf(const py::handle& model) {
  const ModelSpec& spec = ModelOf(model)->spec();
  py::list inputs;
  for (const TensorSpec& input : spec.inputs) {
    py::list dims;
    for (int64_t dim : input.dims) dims.append(dim);
    inputs.append(py::make_tuple(input.name, std::string(DataTypeName(input.dtype)),
                                 py::tuple(dims)));
  }
  return py::make_tuple(spec.name, spec.max_batch_size, py::tuple(inputs));
}

// A generate body as json.loads decoded it, walked as the native engine walks it
// for the model `spec` (GenerateSpecOf): (id, inputs as build_request takes them,
// JSON data already wire bytes, parameters as (key, value) pairs, uninterpreted).
// Raises the native engine's errors.
py::tuple DecodeGenerateFromPy(const py::object& doc, const py::buffer& body,
                               const py::tuple& spec) {
  if (LoneSurrogateIn(body, doc)) ThrowIfError(InvalidSurrogate());
  DescriptionSink sink;
  Parameters params;
  ThrowIfError(DecodeGenerateJson<PyJsonReader>(doc.ptr(), GenerateSpecFromPy(spec),
                                                &sink, &params));
  return GenerateDecoded(sink, params);
}

}  // namespace

void RegisterInferJson(py::module_& m) {
  py::class_<WireBytes>(m, "WireBytes", py::buffer_protocol(),
                        "Wire bytes a JSON walk converted (read-only buffer)")
      .def_buffer([](WireBytes& wire) {
        return py::buffer_info(wire.bytes.data(),
                               static_cast<py::ssize_t>(wire.bytes.size()), true);
      })
      .def("__len__", [](const WireBytes& wire) { return wire.bytes.size(); })
      .def("__reduce__", [](const WireBytes& wire) {
        return py::make_tuple(py::module_::import("builtins").attr("bytes"),
                              py::make_tuple(py::bytes(wire.bytes)));
      });
  m.attr("MAX_REQUEST_TENSORS") = kMaxRequestTensors;
  m.attr("JSON_OFF_LOOP_BYTES") = kJsonOffLoopBytes;
  m.def("decode_infer_json", &DecodeInferJsonFromPy, py::arg("doc"), py::arg("header"),
        py::arg("header_length"), py::arg("body_size"), py::arg("model"),
        "An infer request as json.loads decoded it, checked as the native HTTP engine "
        "checks it: (id, default_binary, inputs, outputs, binary_outputs, parameters "
        "| None, error | None); the error is the first one in request order, and "
        "what was decoded before it is there for build_request");
  m.attr("GENERATE_ONE_RESPONSE") = kGenerateOneResponse;
  m.def("generate_spec", &GenerateSpecOf, py::arg("model"),
        "What the generate walk needs of a core model, as plain (picklable) values");
  m.def("decode_generate_json", &DecodeGenerateFromPy, py::arg("doc"), py::arg("body"),
        py::arg("spec"),
        "A generate request (Triton's generate extension) as json.loads decoded it, "
        "checked as the native HTTP engine checks it: (id, inputs, parameters as "
        "(key, value) pairs); raises the native engine's errors");
  m.def(
      "parse_header_length",
      [](const std::string& value, size_t body_size) {
        size_t out = 0;
        ThrowIfError(ParseHeaderLength(value, body_size, &out));
        return out;
      },
      py::arg("value"), py::arg("body_size"),
      "Inference-Header-Content-Length checked like Triton (atoi semantics)");
  m.def(
      "json_parse_error",
      [](const std::string& kind, const std::string& detail) {
        if (kind == "depth") return MakeError(JsonTooDeep());
        if (kind == "encoding") return MakeError(JsonInvalidEncoding());
        return MakeError(JsonParseFailure(detail));
      },
      py::arg("kind"), py::arg("detail") = "",
      "The error for a request body that is not JSON ('syntax' with the parser's "
      "detail, 'depth', 'encoding'), worded as the native engine words it");
}

}  // namespace tritonx::bindings
