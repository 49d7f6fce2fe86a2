// Shared helpers for the binding files; include this first in each of them.
#pragma once

#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "core/infer_request.h"
#include "core/status.h"
#include "core/tensor.h"

namespace py = pybind11;

namespace tritonx {
class Executor;
class Model;
}  // namespace tritonx

namespace tritonx::bindings {

// The core Model behind a Python Model handle, and a new handle for a core Model
// (bind_model.cpp).
std::shared_ptr<Model> ModelOf(const py::handle& obj);
py::object WrapModel(std::shared_ptr<Model> model);
// The C++ executor an instance object brings (`native_executor`, bind_stub.cpp).
std::shared_ptr<Executor> NativeExecutorOf(const py::handle& obj);

// Takes the GIL on a C++ thread (scheduler worker, gRPC thread) and keeps that
// thread's Python thread state after release. Plain gil_scoped_acquire creates and
// destroys a thread state on every acquisition from a foreign thread, which costs
// more than the Python call it guards on the per-request path. Once the thread has
// ended, a short-lived thread deletes the kept state: instance workers come and go
// with every load and unload, and each state holds KiB (its frame stack).
//
// Thread safety: one object per acquisition, on the stack of the thread that takes
// the GIL; the kept state belongs to that thread alone.
class GilAcquire {
 public:
  GilAcquire();

 private:
  // Set before gil_ is constructed (declaration order): whether this is the
  // thread's first acquisition, seen while the thread holds no state yet.
  bool first_on_thread_;
  py::gil_scoped_acquire gil_;
};

// Raises the tritonx.errors exception matching the status (no-op when OK).
void ThrowIfError(const Status& status);

// Raises tritonx.errors.InvalidArgumentError(message).
[[noreturn]] void ThrowInvalidArg(const std::string& message);

// Conversions of values that come from clients (through a frontend). Anything
// unconvertible raises InvalidArgumentError with a message naming `what` (e.g.
// "'id'"), never a pybind11 cast error or a UnicodeEncodeError.
// A str that encodes to UTF-8 (a lone surrogate does not).
std::string TextFromPy(const py::handle& value, const std::string& what);
// An integer (int or anything with __index__, bool excluded) within int64.
int64_t Int64FromPy(const py::handle& value, const std::string& what);

// The Python exception object (tritonx.errors) for a non-OK status. GIL held.
py::object MakeError(const Status& status);

// Status for a Python exception instance: TritonXError keeps its code, anything else
// is INTERNAL. GIL held.
Status StatusFromPyException(const py::handle& exc);
Status StatusFromErrorAlreadySet(py::error_already_set& err);

// A strong reference to a Python object that may be dropped from any thread: with the
// GIL it is released at once, without it the release is queued and done the next time
// a thread of ours holds the GIL (ReleasePendingPyRefs). C++ threads (gRPC, scheduler
// workers) therefore never block on the GIL just to drop a reference.
std::shared_ptr<const void> MakePyOwner(py::object obj);
// GIL held; also writes queued core log messages, one drain at a time.
void ReleasePendingPyRefs();

// Queues a core log message for `sink` (a borrowed callable kept alive by the caller)
// to be written by ReleasePendingPyRefs, and wakes PumpQueuedLogs. Callable without
// the GIL.
void QueueLogMessage(PyObject* sink, int level, std::string message);
// The server's log pump (a Python thread of its own): waits, without the GIL, until
// a message is queued, WakeLogPump is called or `timeout_s` passes, then writes what
// is queued (ReleasePendingPyRefs), so a line logged on a C++ thread (an HTTP
// worker's verbose request line) is written at once rather than whenever Python
// next runs. GIL held on entry and return.
void PumpQueuedLogs(double timeout_s);
void WakeLogPump();

// Python value <-> request parameter: bool, int (int64, or uint64 past INT64_MAX),
// float, str. ParameterFromPy (values from backends) raises ValueError for anything
// else, ClientParameterFromPy (values from clients) InvalidArgumentError.
// ParameterToPy decodes invalid UTF-8 with replacement characters, never fails.
ParameterValue ParameterFromPy(const py::handle& value, const std::string& key);
ParameterValue ClientParameterFromPy(const py::handle& value, const std::string& key);
py::object ParameterToPy(const ParameterValue& value);
py::dict ParametersToDict(const Parameters& params);

// numpy dtype for a fixed-size data type (BF16 as uint16); BYTES has none.
py::dtype NumpyDtype(DataType dtype);

// Serializes an object/bytes/str array into BYTES wire form (row-major order; str
// as UTF-8, other objects as their str()). GIL held.
Status SerializeBytes(const py::array& array, std::string* out);

// A tensor from a Python output value: ndarray, a core Tensor, any DLPack tensor
// (torch, CuPy, JAX; GPU ones stay on the device), or (datatype, one of those) to
// relabel an equally sized type. Object/bytes arrays are serialized to BYTES wire
// form; non-contiguous arrays and host DLPack tensors are copied once into
// row-major order. GIL held.
Status TensorFromPy(const std::string& name, const py::handle& value, Tensor* out);
// GIL held. One response from what a Python backend returns for one request: a
// mapping output-name -> value (TensorFromPy; optional `parameters`), or an
// exception. The one rule for both execution modes (bind_model, bind_stub).
std::unique_ptr<InferenceResponse> ResponseFromPy(const py::object& item);
// Host BYTES wire bytes as a numpy object array of `bytes` of `shape`; ValueError,
// naming the tensor, when the elements do not match the shape (bind_tensor.cpp).
py::array BytesObjectArray(const char* bytes, size_t byte_size,
                           const std::vector<int64_t>& shape, std::string_view name);

// DLPack (bind_dlpack.cpp). A core tensor over any producer (an object with
// __dlpack__, or a "dltensor"/"dltensor_versioned" capsule) without a copy: its
// owner holds the producer and the consumed capsule's tensor; memory type and device
// come from the DLPack device. `compact`: a strided host tensor is copied once
// instead of refused. Errors (INVALID_ARG, naming the tensor) are returned. GIL held.
Status TensorFromDLPack(const std::string& name, const py::handle& producer,
                        Tensor* out, bool compact);
// `__dlpack__(stream, max_version, dl_device, copy)` of a core tensor (array API
// semantics; BufferError for what cannot be exported) and `__dlpack_device__()`.
py::object TensorToDLPack(const Tensor& tensor, const py::object& stream,
                          const py::object& max_version, const py::object& dl_device,
                          const py::object& copy);
py::tuple TensorDLPackDevice(const Tensor& tensor);

// A request input from a Python (name, datatype, shape, buffer) tuple; the buffer is
// held, not copied (bind_request.cpp).
Tensor InputFromPy(const py::handle& item);

// numpy view (or BYTES object array) of a Tensor wrapper object; the array keeps
// `tensor_obj` alive. Defined in bind_tensor.cpp.
py::array TensorToNumpy(const py::object& tensor_obj);

// Python wrapper types, shared between binding files.
struct PyTensor {
  PyTensor() = default;
  explicit PyTensor(Tensor t) : tensor(std::move(t)) {}
  Tensor tensor;
  // A GPU tensor's host copy, made on its first host read (as_numpy, raw, the
  // buffer protocol) and kept with the wrapper. GIL held.
  std::shared_ptr<Tensor> host;
  const Tensor& Host();  // bind_tensor.cpp; raises on a failed copy
};

struct PyRequest {
  std::shared_ptr<InferenceRequest> request;
  py::object context = py::none();
};

struct PyResponse {
  std::shared_ptr<InferenceResponse> response;
};

}  // namespace tritonx::bindings
