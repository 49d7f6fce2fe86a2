#include "pybind_common.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace tritonx::bindings {
namespace {

// Module objects cached for the life of the process. Leaked on purpose: destroying
// them after the interpreter finalizes would touch freed Python state.
py::object& ErrorsModule() {
  static py::object* module = new py::object(py::module_::import("tritonx.errors"));
  return *module;
}

std::mutex& PendingMutex() {
  static std::mutex mu;
  return mu;
}
std::vector<PyObject*>& Pending() {
  static auto* pending = new std::vector<PyObject*>();
  return *pending;
}

// Deletes the Python thread state of a C++ thread that has ended, on a thread of its
// own (detached, so nobody waits for it). The ended thread could not: a thread ends
// while another joins it, and the joiner may hold the GIL (dropping the last
// reference to a model). Two steps:
// - Clearing the state runs the destructors of what the ended thread kept
//   (threading.local values, its dict), which may call PyGILState_Ensure (gevent's
//   allocator does, when a hub the thread used is freed). They run under a state of
//   this thread's own from PyGILState_Ensure, so such a call finds the GIL already
//   held by this thread; under the adopted state it would wait for the GIL this
//   thread holds, forever (seen: a test process stopped with every thread waiting).
// - Deleting it: from Python 3.12 on, deleting a state bound to the PyGILState API
//   clears the *deleting* thread's own binding, so it is deleted as the current state
//   of this thread once its own state is gone, which frees it and releases the GIL.
// A dying interpreter is left alone: the process is ending anyway.
void DeleteEndedThreadState(PyThreadState* state) {
#if PY_VERSION_HEX >= 0x030D0000
  const bool finalizing = Py_IsFinalizing() != 0;
#else
  const bool finalizing = _Py_IsFinalizing() != 0;
#endif
  if (!Py_IsInitialized() || finalizing) return;
  const PyGILState_STATE own = PyGILState_Ensure();
  PyThreadState_Clear(state);
  PyGILState_Release(own);
  PyEval_RestoreThread(state);
  PyThreadState_DeleteCurrent();
}

// The thread state GilAcquire keeps for a thread Python did not create, deleted after
// the thread ends (DeleteEndedThreadState). A thread Python created (the main thread,
// threading.Thread) owns its state already; nothing is done for it.
//
// Thread safety: thread_local, used only by its own thread.
class KeptThreadState {
 public:
  KeptThreadState() = default;
  KeptThreadState(const KeptThreadState&) = delete;
  KeptThreadState& operator=(const KeptThreadState&) = delete;

  // True on the thread's first call; called before the GIL is taken.
  bool FirstUse() {
    if (seen_) return false;
    seen_ = true;
    foreign_ = PyGILState_GetThisThreadState() == nullptr;
    return true;
  }
  // With the GIL held, after the first acquisition.
  void Keep(py::gil_scoped_acquire& gil) {
    gil.inc_ref();
    if (foreign_) state_ = PyThreadState_Get();
  }
  // At the thread's exit; the GIL was released by its last GilAcquire.
  ~KeptThreadState() {
    if (state_ == nullptr) return;
    std::thread(DeleteEndedThreadState, state_).detach();
  }

 private:
  bool seen_ = false;
  bool foreign_ = false;
  PyThreadState* state_ = nullptr;
};

KeptThreadState& ThisThreadsKeptState() {
  thread_local KeptThreadState kept;
  return kept;
}

void ReleasePyObject(PyObject* obj) {
  if (!Py_IsInitialized()) return;  // interpreter gone: leak rather than crash
  if (PyGILState_Check()) {
    Py_DECREF(obj);
    return;
  }
  std::lock_guard<std::mutex> lock(PendingMutex());
  Pending().push_back(obj);
}

}  // namespace

GilAcquire::GilAcquire() : first_on_thread_(ThisThreadsKeptState().FirstUse()) {
  if (first_on_thread_) ThisThreadsKeptState().Keep(gil_);
}

py::object MakeError(const Status& status) {
  return ErrorsModule().attr("error_from_code")(status.CodeName(), status.message());
}

void ThrowIfError(const Status& status) {
  if (status.ok()) return;
  py::object exc = MakeError(status);
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

void ThrowInvalidArg(const std::string& message) {
  ThrowIfError(Status(StatusCode::kInvalidArg, message));
  throw std::logic_error("unreachable");  // ThrowIfError always throws for an error
}

std::string TextFromPy(const py::handle& value, const std::string& what) {
  if (!PyUnicode_Check(value.ptr())) {
    ThrowInvalidArg("Unable to parse " + what + ": expected a string");
  }
  Py_ssize_t size = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(value.ptr(), &size);
  if (utf8 == nullptr) {
    PyErr_Clear();  // UnicodeEncodeError: a lone surrogate
    ThrowInvalidArg("Unable to parse " + what + ": not a valid UTF-8 string");
  }
  return std::string(utf8, static_cast<size_t>(size));
}

namespace {

// The integer value of `value` as a Python int, or nothing if it is not an
// integer (floats, strings, bools, None...).
py::object AsPyInt(const py::handle& value) {
  if (PyBool_Check(value.ptr()) || !PyIndex_Check(value.ptr())) return py::object();
  PyObject* index = PyNumber_Index(value.ptr());
  if (index == nullptr) {
    PyErr_Clear();
    return py::object();
  }
  return py::reinterpret_steal<py::object>(index);
}

}  // namespace

int64_t Int64FromPy(const py::handle& value, const std::string& what) {
  py::object number = AsPyInt(value);
  if (!number) ThrowInvalidArg("Unable to parse " + what + ": expected an integer");
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(number.ptr(), &overflow);
  if (overflow != 0) {
    ThrowInvalidArg("Unable to parse " + what + ": " + std::string(py::str(number)) +
                    " is out of the int64 range");
  }
  return static_cast<int64_t>(v);
}

Status StatusFromPyException(const py::handle& exc) {
  std::string message = py::str(exc);
  if (py::isinstance(exc, ErrorsModule().attr("TritonXError"))) {
    return Status(StatusCodeFromName(py::str(exc.attr("code"))), message);
  }
  if (message.empty()) message = py::str(py::type::handle_of(exc).attr("__name__"));
  return Status(StatusCode::kInternal, message);
}

Status StatusFromErrorAlreadySet(py::error_already_set& err) {
  Status status = StatusFromPyException(err.value());
  err.restore();
  PyErr_Clear();
  return status;
}

std::shared_ptr<const void> MakePyOwner(py::object obj) {
  PyObject* raw = obj.release().ptr();
  return std::shared_ptr<const void>(raw, [](const void* p) {
    ReleasePyObject(static_cast<PyObject*>(const_cast<void*>(p)));
  });
}

struct QueuedLog {
  PyObject* sink;
  int level;
  std::string message;
};

std::vector<QueuedLog>& QueuedLogs() {
  static auto* logs = new std::vector<QueuedLog>();
  return *logs;
}

static std::condition_variable& LogPumpCv() {
  static auto* cv = new std::condition_variable();
  return *cv;
}
static bool log_pump_woken = false;  // guarded by PendingMutex

void QueueLogMessage(PyObject* sink, int level, std::string message) {
  {
    std::lock_guard<std::mutex> lock(PendingMutex());
    QueuedLogs().push_back({sink, level, std::move(message)});
  }
  LogPumpCv().notify_one();
}

void PumpQueuedLogs(double timeout_s) {
  {
    py::gil_scoped_release release;
    std::unique_lock<std::mutex> lock(PendingMutex());
    LogPumpCv().wait_for(lock, std::chrono::duration<double>(timeout_s),
                         [] { return log_pump_woken || !QueuedLogs().empty(); });
    log_pump_woken = false;
  }
  ReleasePendingPyRefs();
}

void WakeLogPump() {
  {
    std::lock_guard<std::mutex> lock(PendingMutex());
    log_pump_woken = true;
  }
  LogPumpCv().notify_all();
}

static std::recursive_mutex& DrainMutex() {
  static auto* mu = new std::recursive_mutex();
  return *mu;
}

void ReleasePendingPyRefs() {
  // Drains run one at a time and in full: the GIL may pass to another thread
  // between two queued messages, and a caller that then found the queue empty would
  // log its own line ahead of messages queued before it (an HTTP 404 line ahead of
  // its request line). Waited for without the GIL, which the draining thread needs;
  // recursive for a log sink that logs again.
  std::unique_lock<std::recursive_mutex> drain(DrainMutex(), std::try_to_lock);
  if (!drain.owns_lock()) {
    py::gil_scoped_release no_gil;
    drain.lock();
  }
  std::vector<PyObject*> batch;
  std::vector<QueuedLog> logs;
  {
    std::lock_guard<std::mutex> lock(PendingMutex());
    if (Pending().empty() && QueuedLogs().empty()) return;
    batch.swap(Pending());
    logs.swap(QueuedLogs());
  }
  for (PyObject* obj : batch) Py_DECREF(obj);
  for (auto& log : logs) {
    try {
      py::handle fn(log.sink);
      fn(log.level, log.message);
    } catch (py::error_already_set& err) {
      err.discard_as_unraisable("tritonx: log sink");
    }
  }
}

namespace {

// The parameter value of a Python object, or false with `*error` saying why.
bool TryParameterFromPy(const py::handle& value, const std::string& key,
                        ParameterValue* out, std::string* error) {
  if (PyBool_Check(value.ptr())) {
    *out = value.ptr() == Py_True;
    return true;
  }
  if (py::object number = AsPyInt(value)) {
    // Values past INT64_MAX (a uint64 sequence id) keep their unsigned type.
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(number.ptr(), &overflow);
    if (overflow == 0) {
      *out = static_cast<int64_t>(v);
      return true;
    }
    if (overflow > 0) {
      unsigned long long u = PyLong_AsUnsignedLongLong(number.ptr());
      if (!(u == static_cast<unsigned long long>(-1) && PyErr_Occurred())) {
        *out = static_cast<uint64_t>(u);
        return true;
      }
      PyErr_Clear();
    }
    *error = "Unable to parse '" + key + "': " + std::string(py::str(number)) +
             " does not fit in a 64-bit integer";
    return false;
  }
  if (PyFloat_Check(value.ptr())) {
    *out = PyFloat_AS_DOUBLE(value.ptr());
    return true;
  }
  if (PyUnicode_Check(value.ptr())) {
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(value.ptr(), &size);
    if (utf8 != nullptr) {
      *out = std::string(utf8, static_cast<size_t>(size));
      return true;
    }
    PyErr_Clear();
    *error = "Unable to parse '" + key + "': not a valid UTF-8 string";
    return false;
  }
  *error = "Unable to parse '" + key +
           "': expected a boolean, an integer, a number or a string";
  return false;
}

}  // namespace

ParameterValue ParameterFromPy(const py::handle& value, const std::string& key) {
  ParameterValue out;
  std::string error;
  if (!TryParameterFromPy(value, key, &out, &error)) throw py::value_error(error);
  return out;
}

ParameterValue ClientParameterFromPy(const py::handle& value, const std::string& key) {
  ParameterValue out;
  std::string error;
  if (!TryParameterFromPy(value, key, &out, &error)) ThrowInvalidArg(error);
  return out;
}

py::object ParameterToPy(const ParameterValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    // Strings normally come from protobuf or Python and are valid UTF-8; header
    // values forwarded from gRPC metadata need not be.
    PyObject* str = PyUnicode_DecodeUTF8(
        text->data(), static_cast<Py_ssize_t>(text->size()), "replace");
    if (str == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(str);
  }
  return std::visit([](const auto& v) -> py::object { return py::cast(v); }, value);
}

py::dict ParametersToDict(const Parameters& params) {
  py::dict out;
  for (const auto& [key, value] : params) out[py::str(key)] = ParameterToPy(value);
  return out;
}

py::dtype NumpyDtype(DataType dtype) {
  switch (dtype) {
    case DataType::kBool:
      return py::dtype("?");
    case DataType::kUint8:
      return py::dtype("u1");
    case DataType::kUint16:
    case DataType::kBf16:
      return py::dtype("<u2");
    case DataType::kUint32:
      return py::dtype("<u4");
    case DataType::kUint64:
      return py::dtype("<u8");
    case DataType::kInt8:
      return py::dtype("i1");
    case DataType::kInt16:
      return py::dtype("<i2");
    case DataType::kInt32:
      return py::dtype("<i4");
    case DataType::kInt64:
      return py::dtype("<i8");
    case DataType::kFp16:
      return py::dtype("<f2");
    case DataType::kFp32:
      return py::dtype("<f4");
    case DataType::kFp64:
      return py::dtype("<f8");
    default:
      return py::dtype("u1");
  }
}

namespace {

DataType DataTypeOfArray(const py::array& array) {
  const py::dtype dt = array.dtype();
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  switch (kind) {
    case 'b':
      return DataType::kBool;
    case 'u':
      return size == 1   ? DataType::kUint8
             : size == 2 ? DataType::kUint16
             : size == 4 ? DataType::kUint32
                         : DataType::kUint64;
    case 'i':
      return size == 1   ? DataType::kInt8
             : size == 2 ? DataType::kInt16
             : size == 4 ? DataType::kInt32
                         : DataType::kInt64;
    case 'f':
      return size == 2   ? DataType::kFp16
             : size == 4 ? DataType::kFp32
                         : DataType::kFp64;
    case 'O':
    case 'S':
    case 'U':
      return DataType::kBytes;
    default:
      return DataType::kInvalid;
  }
}

}  // namespace

Status SerializeBytes(const py::array& array, std::string* out) {
  py::object flat = array.attr("ravel")(py::str("C"));
  for (const py::handle item : flat) {
    char* data = nullptr;
    Py_ssize_t length = 0;
    py::object holder;
    if (PyBytes_Check(item.ptr())) {
      PyBytes_AsStringAndSize(item.ptr(), &data, &length);
    } else if (PyUnicode_Check(item.ptr())) {
      const char* utf8 = PyUnicode_AsUTF8AndSize(item.ptr(), &length);
      if (utf8 == nullptr) throw py::error_already_set();
      data = const_cast<char*>(utf8);
    } else if (PyByteArray_Check(item.ptr())) {
      data = PyByteArray_AsString(item.ptr());
      length = PyByteArray_Size(item.ptr());
    } else {
      // numpy scalars (np.bytes_ / np.str_) and anything else with a str(): Triton's
      // serializer stringifies non-bytes items the same way.
      holder = py::reinterpret_steal<py::object>(PyObject_Str(item.ptr()));
      if (!holder) throw py::error_already_set();
      const char* utf8 = PyUnicode_AsUTF8AndSize(holder.ptr(), &length);
      data = const_cast<char*>(utf8);
    }
    if (length > std::numeric_limits<uint32_t>::max()) {
      return Status(StatusCode::kInvalidArg, "BYTES element larger than 4 GiB");
    }
    AppendBytesElement(out, data, static_cast<size_t>(length));
  }
  return Status::Ok();
}

Status TensorFromPy(const std::string& name, const py::handle& value, Tensor* out) {
  py::object array_obj;
  DataType forced = DataType::kInvalid;
  if (py::isinstance<py::tuple>(value) && py::len(value) == 2) {
    py::tuple pair = py::reinterpret_borrow<py::tuple>(value);
    forced = DataTypeFromName(py::str(pair[0]).cast<std::string>());
    if (forced == DataType::kInvalid) {
      return Status(StatusCode::kInvalidArg,
                    "output '" + name + "' has an unknown datatype");
    }
    array_obj = pair[1];
  } else {
    array_obj = py::reinterpret_borrow<py::object>(value);
  }
  if (!py::isinstance<py::array>(array_obj) &&
      (py::isinstance<PyTensor>(array_obj) || py::hasattr(array_obj, "__dlpack__"))) {
    // A core tensor (pb_utils.Tensor.from_dlpack, a BLS output passed on) as it is;
    // any other DLPack tensor (torch, CuPy, JAX) without a copy, where it lives: a
    // GPU output stays on the device until a consumer needs host bytes
    // (tensor_memory.h).
    if (py::isinstance<PyTensor>(array_obj)) {
      *out = array_obj.cast<PyTensor&>().tensor;
      out->name = name;
      out->aliased = true;  // the model may keep it (and its producer)
    } else {
      Status status = TensorFromDLPack(name, array_obj, out, /*compact=*/true);
      if (!status.ok()) {
        return Status(StatusCode::kInvalidArg,
                      "output '" + name + "': " + status.message());
      }
      // The model may keep the producer (a strided one was compacted into our own
      // copy: marked too, which costs a BLS caller one more copy, rarely).
      out->aliased = true;
    }
    if (forced != DataType::kInvalid && forced != out->dtype) {
      if (forced == DataType::kBytes ||
          DataTypeByteSize(forced) != DataTypeByteSize(out->dtype)) {
        return Status(StatusCode::kInvalidArg,
                      "output '" + name + "' cannot be sent as " +
                          std::string(DataTypeName(forced)) + ": its elements are " +
                          std::string(DataTypeName(out->dtype)));
      }
      out->dtype = forced;
    }
    return Status::Ok();
  }
  py::array array = py::array::ensure(array_obj);
  if (!array) {
    PyErr_Clear();
    return Status(
        StatusCode::kInvalidArg,
        "output '" + name + "' is not a numpy array (got " +
            std::string(py::str(py::type::handle_of(array_obj).attr("__name__"))) +
            ")");
  }
  DataType dtype = forced != DataType::kInvalid ? forced : DataTypeOfArray(array);
  if (dtype == DataType::kInvalid) {
    return Status(StatusCode::kInvalidArg, "output '" + name +
                                               "' has an unsupported numpy dtype " +
                                               std::string(py::str(array.dtype())));
  }
  out->name = name;
  out->dtype = dtype;
  out->shape.assign(array.shape(), array.shape() + array.ndim());
  if (dtype == DataType::kBytes) {
    auto serialized = std::make_shared<std::string>();
    Status status = SerializeBytes(array, serialized.get());
    if (!status.ok()) return status;
    out->data = serialized->data();
    out->byte_size = serialized->size();
    out->owner = serialized;
    out->read_only = false;
    out->aliased = false;
    return Status::Ok();
  }
  bool copied = false;
  if (!(array.flags() & py::array::c_style)) {
    array = py::array::ensure(array, py::array::c_style | py::array::forcecast);
    copied = true;
  }
  out->data = static_cast<const char*>(array.data());
  out->byte_size = static_cast<size_t>(array.nbytes());
  // Not copied: whoever views these bytes later (a BLS caller, an ensemble's next
  // step) may write them only if the model's array allowed it.
  out->read_only = !array.writeable();
  // The model may keep its array (state, a slice of a table): a BLS caller gets a
  // copy to write (Tensor::aliased).
  out->aliased = !copied;
  out->owner = MakePyOwner(std::move(array));
  return Status::Ok();
}

// GIL held. One response from what a Python backend returns for one request: a
// mapping output-name -> value (with optional `parameters`), or an exception.
std::unique_ptr<InferenceResponse> ResponseFromPy(const py::object& item) {
  auto response = std::make_unique<InferenceResponse>();
  if (PyExceptionInstance_Check(item.ptr())) {
    response->status = StatusFromPyException(item);
  } else if (py::isinstance<py::dict>(item) || py::hasattr(item, "items")) {
    // A mapping may carry response parameters (the Python backend's
    // InferenceResponse(parameters=...)) as a `parameters` attribute.
    py::object params = py::getattr(item, "parameters", py::none());
    if (!params.is_none() && py::hasattr(params, "items")) {
      for (const py::handle pair : params.attr("items")()) {
        py::tuple kv = py::reinterpret_borrow<py::tuple>(pair);
        std::string key = py::str(kv[0]);
        response->parameters.emplace_back(key, ParameterFromPy(kv[1], key));
      }
    }
    for (const py::handle pair : item.attr("items")()) {
      py::tuple kv = py::reinterpret_borrow<py::tuple>(pair);
      Tensor tensor;
      Status status = TensorFromPy(kv[0].cast<std::string>(), kv[1], &tensor);
      if (!status.ok()) {
        response->status = status;
        response->outputs.clear();
        break;
      }
      response->outputs.push_back(std::move(tensor));
    }
  } else {
    response->status = Status(StatusCode::kInternal,
                              "backend response must be a mapping of output name to "
                              "array or an exception");
  }
  return response;
}

}  // namespace tritonx::bindings
