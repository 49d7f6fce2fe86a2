// DLPack through the binding, both ways (the C structs and conversions are in
// core/dlpack.h): any producer (numpy, torch, CuPy, JAX; GPU ones where CUDA is
// usable) becomes a core Tensor without a copy, and a core Tensor exports
// `__dlpack__` / `__dlpack_device__` (bind_tensor.cpp) without one.
//
// Lifetimes: an imported tensor's owner holds the producer object and the consumed
// capsule's DLManagedTensor (its deleter runs when the last copy of the tensor is
// gone, with the GIL: numpy's deleter needs it). An exported capsule holds a copy
// of the core tensor, hence its owner, until the consumer calls the deleter.
#include "core/cuda_runtime.h"
#include "core/dlpack.h"
#include "core/tensor_memory.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

constexpr const char* kCapsule = "dltensor";
constexpr const char* kCapsuleVersioned = "dltensor_versioned";

[[noreturn]] void ThrowBufferError(const std::string& message) {
  PyErr_SetString(PyExc_BufferError, message.c_str());
  throw py::error_already_set();
}

// The producer's capsule: the versioned kind when it offers one (numpy 2 needs it
// for read-only arrays), else the legacy one. A GPU producer is asked to make its
// data ready on the legacy default stream (DLPack stream 1), which the core's
// copies use.
py::object CapsuleOf(const py::handle& producer, bool gpu) {
  py::object method = producer.attr("__dlpack__");
  try {
    if (gpu)
      return method(py::arg("stream") = 1,
                    py::arg("max_version") = py::make_tuple(1, 0));
    return method(py::arg("max_version") = py::make_tuple(1, 0));
  } catch (py::error_already_set& err) {
    if (!err.matches(PyExc_TypeError)) throw;  // a producer without max_version
  }
  if (gpu) return method(py::arg("stream") = 1);
  return method();
}

// torch.Tensor, the usual producer, answers __dlpack_device__ and __dlpack__ in
// Python (~3 us together per output); `is_cuda`, `requires_grad` and
// torch.utils.dlpack.to_dlpack are C (~0.3 us). Found once torch is imported by
// someone else (the binding never imports it); leaked, as the module stays. Called
// with the GIL held, which serialises the lazy lookup.
struct TorchFastPath {
  PyObject* tensor_type = nullptr;
  PyObject* to_dlpack = nullptr;
};

const TorchFastPath* Torch() {
  static TorchFastPath* found = nullptr;
  if (found != nullptr) return found;
  if (PyDict_GetItemString(PyImport_GetModuleDict(), "torch") == nullptr)
    return nullptr;
  try {
    py::module_ torch = py::module_::import("torch");
    py::object to_dlpack = py::module_::import("torch.utils.dlpack").attr("to_dlpack");
    py::object tensor = torch.attr("Tensor");
    found = new TorchFastPath{tensor.release().ptr(), to_dlpack.release().ptr()};
  } catch (py::error_already_set&) {
    PyErr_Clear();
  }
  return found;
}

// The capsule of a host torch tensor without grad through the C path, else null.
py::object TorchHostCapsule(const py::handle& producer) {
  const TorchFastPath* torch = Torch();
  if (torch == nullptr ||
      Py_TYPE(producer.ptr()) != reinterpret_cast<PyTypeObject*>(torch->tensor_type)) {
    return py::object();
  }
  if (py::bool_(producer.attr("is_cuda")) ||
      py::bool_(producer.attr("requires_grad"))) {
    return py::object();  // the protocol: stream handshake, torch's own refusal
  }
  return py::reinterpret_borrow<py::object>(torch->to_dlpack)(producer);
}

// Whether the producer forbids writes: only DLPack 1.x can say so.
bool ProducerReadOnly(const DLManagedTensor&) { return false; }
bool ProducerReadOnly(const DLManagedTensorVersioned& managed) {
  return (managed.flags & kDLPackFlagReadOnly) != 0;
}

template <typename Managed>
void DeleteManaged(void* ptr) {
  auto* managed = static_cast<Managed*>(ptr);
  if (managed->deleter != nullptr) managed->deleter(managed);
}

// Describes the capsule's tensor and, when it is used as it is, takes the managed
// tensor over from the capsule (renamed "used_...", so its destructor leaves it)
// and keeps the producer's read-only flag (a copy is ours: writable).
template <typename Managed>
Status Consume(PyObject* capsule, const char* name, const char* used,
               const std::string& tensor_name, const py::object& producer, bool compact,
               Tensor* out) {
  auto* managed = static_cast<Managed*>(PyCapsule_GetPointer(capsule, name));
  if (managed == nullptr) throw py::error_already_set();
  Status status = compact ? CompactHostDLTensor(managed->dl_tensor, tensor_name, out)
                          : DescribeDLTensor(managed->dl_tensor, tensor_name, out);
  if (!status.ok() || out->owner)
    return status;  // refused, or copied: capsule frees it
  if (PyCapsule_SetName(capsule, used) != 0) throw py::error_already_set();
  out->read_only = ProducerReadOnly(*managed);
  py::capsule keep(managed, &DeleteManaged<Managed>);
  out->owner = MakePyOwner(py::make_tuple(producer, std::move(keep)));
  return Status::Ok();
}

void DestroyUnconsumed(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, kCapsule)) {
    DeleteManaged<DLManagedTensor>(PyCapsule_GetPointer(capsule, kCapsule));
  }
}

void DestroyUnconsumedVersioned(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, kCapsuleVersioned)) {
    DeleteManaged<DLManagedTensorVersioned>(
        PyCapsule_GetPointer(capsule, kCapsuleVersioned));
  }
}

}  // namespace

Status TensorFromDLPack(const std::string& name, const py::handle& value, Tensor* out,
                        bool compact) {
  py::object producer = py::reinterpret_borrow<py::object>(value);
  py::object capsule;
  out->owner.reset();
  try {
    if (PyCapsule_CheckExact(value.ptr())) {
      capsule = producer;  // a bare capsule (torch.utils.dlpack.to_dlpack, to_dlpack())
    } else if (!py::hasattr(producer, "__dlpack__")) {
      return Status(
          StatusCode::kInvalidArg,
          "tensor '" + name + "': not a DLPack tensor or capsule (got " +
              std::string(py::str(py::type::handle_of(producer).attr("__name__"))) +
              ")");
    } else if (py::object fast = TorchHostCapsule(producer)) {
      capsule = std::move(fast);
    } else {
      bool gpu = false;
      if (py::hasattr(producer, "__dlpack_device__")) {
        py::tuple device = producer.attr("__dlpack_device__")();
        const int type = device[0].cast<int>();
        gpu = type == kDLCUDA || type == kDLCUDAManaged;
        if (gpu && !CudaUsable()) {
          return Status(StatusCode::kInvalidArg,
                        "tensor '" + name + "' is in GPU memory (cuda:" +
                            std::string(py::str(device[1])) +
                            "), but this server has no usable CUDA device (or was "
                            "built without CUDA)");
        }
      }
      capsule = CapsuleOf(producer, gpu);
    }
    PyObject* cap = capsule.ptr();
    if (PyCapsule_IsValid(cap, kCapsule)) {
      return Consume<DLManagedTensor>(cap, kCapsule, "used_dltensor", name, producer,
                                      compact, out);
    }
    if (PyCapsule_IsValid(cap, kCapsuleVersioned)) {
      auto* managed = static_cast<DLManagedTensorVersioned*>(
          PyCapsule_GetPointer(cap, kCapsuleVersioned));
      if (managed->version.major > kDLPackMajorVersion) {
        return Status(StatusCode::kInvalidArg,
                      "tensor '" + name + "' uses DLPack " +
                          std::to_string(managed->version.major) +
                          ".x, newer than this server reads (1.x)");
      }
      return Consume<DLManagedTensorVersioned>(cap, kCapsuleVersioned,
                                               "used_dltensor_versioned", name,
                                               producer, compact, out);
    }
  } catch (py::error_already_set& err) {
    // The producer's own refusal (torch: a tensor that requires grad; numpy: a
    // dtype DLPack lacks), kept as its text.
    Status status = StatusFromErrorAlreadySet(err);
    return Status(
        StatusCode::kInvalidArg,
        "tensor '" + name + "' cannot be taken through DLPack: " + status.message());
  }
  return Status(StatusCode::kInvalidArg,
                "tensor '" + name +
                    "': not a DLPack tensor or capsule (a capsule can be used once)");
}

py::object TensorToDLPack(const Tensor& tensor, const py::object& stream,
                          const py::object& max_version, const py::object& dl_device,
                          const py::object& copy) {
  if (tensor.dtype == DataType::kBytes) {
    ThrowBufferError("DLPack does not have support for string tensors.");
  }
  Tensor source = tensor;
  const bool must_copy = !copy.is_none() && copy.cast<bool>();
  const bool may_copy = copy.is_none() || must_copy;
  if (!dl_device.is_none()) {
    py::tuple wanted = dl_device.cast<py::tuple>();
    const int type = wanted[0].cast<int>();
    const int id = wanted[1].cast<int>();
    const DLDevice ours = DLDeviceOf(tensor);
    if (type == kDLCPU && !tensor.on_host()) {
      if (!may_copy) {
        ThrowBufferError("tensor '" + tensor.name +
                         "' is in GPU memory: exporting it to the CPU needs a copy");
      }
      Status status;
      {
        py::gil_scoped_release release;
        status = HostTensor(tensor, &source);
      }
      if (!status.ok()) ThrowBufferError(status.message());
    } else if (type != ours.device_type || id != ours.device_id) {
      ThrowBufferError("tensor '" + tensor.name +
                       "' cannot be exported to DLPack device (" +
                       std::to_string(type) + ", " + std::to_string(id) + ")");
    }
  }
  if (must_copy && source.data == tensor.data) {
    if (!source.on_host()) {
      ThrowBufferError("copy=True is supported for host tensors only");
    }
    // The consumer's own copy (writable), in reused arena memory (see as_numpy).
    Tensor own;
    Status status;
    {
      py::gil_scoped_release release;
      status = PrivateHostCopy(source, &own, TensorArena::Global().get());
    }
    if (!status.ok()) ThrowBufferError(status.message());
    source = std::move(own);
  }
  if (!source.on_host() && !stream.is_none()) {
    // The consumer's stream must see what the core's (legacy stream) copies and
    // the producer's own import ordering made ready. -1: the consumer syncs itself;
    // 1 (and 0, undefined): the legacy stream itself.
    const auto value = stream.cast<int64_t>();
    if (value != -1 && value != 0 && value != 1) {
      const std::string error = CudaStreamWaitLegacy(
          reinterpret_cast<void*>(static_cast<intptr_t>(value)), source.device_id);
      if (!error.empty()) ThrowBufferError(error);
    }
  }
  const bool versioned =
      !max_version.is_none() && max_version.cast<py::tuple>()[0].cast<int>() >= 1;
  Status status;
  PyObject* capsule = nullptr;
  if (versioned) {
    DLManagedTensorVersioned* managed = nullptr;
    status = ExportDLPackVersioned(source, &managed);
    if (status.ok()) {
      capsule = PyCapsule_New(managed, kCapsuleVersioned, &DestroyUnconsumedVersioned);
      if (capsule == nullptr) DeleteManaged<DLManagedTensorVersioned>(managed);
    }
  } else {
    DLManagedTensor* managed = nullptr;
    status = ExportDLPack(source, &managed);
    if (status.ok()) {
      capsule = PyCapsule_New(managed, kCapsule, &DestroyUnconsumed);
      if (capsule == nullptr) DeleteManaged<DLManagedTensor>(managed);
    }
  }
  if (!status.ok()) ThrowBufferError(status.message());
  if (capsule == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(capsule);
}

py::tuple TensorDLPackDevice(const Tensor& tensor) {
  const DLDevice device = DLDeviceOf(tensor);
  return py::make_tuple(device.device_type, device.device_id);
}

}  // namespace tritonx::bindings
