// CUDA facts and helpers for the Python shell: device count (which GPUs KIND_GPU may
// name), pinned checks, arena views, the copy probe that benchmarks/bench_gpu.py
// compares the staging path against, and the device memory, current device and
// stream-ordered copies a backend whose framework takes raw addresses needs (the
// tensorrt backend). Without a usable GPU they answer 0 / False / raise
// UnavailableError; nothing here needs a GPU to import.
#include <chrono>
#include <cstring>
#include <memory>
#include <string>

#include "core/cuda_runtime.h"
#include "core/server_context.h"
#include "core/tensor_arena.h"
#include "core/tensor_memory.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

std::shared_ptr<TensorArena> ArenaOf(const std::shared_ptr<ServerContext>& context) {
  return context ? context->arena() : TensorArena::Global();
}

// Seconds for `iterations` host->device copies of `bytes` from `source` memory on one
// non-blocking stream, synchronised once at the end (as a batch is). The plain
// cudaMemcpyAsync baseline of the GPU benchmark.
double CopySeconds(const std::string& source, size_t bytes, int iterations, int device,
                   const std::shared_ptr<ServerContext>& context) {
  if (!CudaUsable()) throw std::runtime_error("CUDA is not usable");
  std::shared_ptr<void> host;
  ArenaBuffer block;
  if (source == "cuda_host_alloc") {
    host.reset(CudaHostAlloc(bytes), CudaHostFree);
  } else if (source == "arena") {
    block = ArenaOf(context)->Allocate(bytes);
    host = std::shared_ptr<void>(block, block ? block->data() : nullptr);
  } else if (source == "pageable") {
    host.reset(std::malloc(bytes), std::free);
  } else {
    throw std::invalid_argument("source must be cuda_host_alloc, arena or pageable");
  }
  if (!host) throw std::runtime_error("host allocation failed");
  std::memset(host.get(), 1, bytes);
  std::shared_ptr<void> dev(CudaDeviceAlloc(device, bytes), CudaDeviceFree);
  if (!dev) throw std::runtime_error("cudaMalloc failed");
  std::shared_ptr<void> stream(CudaStreamCreate(device), CudaStreamDestroy);
  if (!stream) throw std::runtime_error("cudaStreamCreate failed");
  auto check = [](const std::string& err) {
    if (!err.empty()) throw std::runtime_error(err);
  };
  check(CudaCopyHostToDevice(dev.get(), host.get(), bytes, stream.get()));  // warm-up
  check(CudaStreamSync(stream.get()));
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) {
    check(CudaCopyHostToDevice(dev.get(), host.get(), bytes, stream.get()));
  }
  check(CudaStreamSync(stream.get()));
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

// Raises UnavailableError (no usable GPU) or InternalError (a CUDA error) for a
// failed call of cuda_runtime.h; `err` is its error text.
void ThrowIfCudaError(const std::string& err, const std::string& what) {
  if (err.empty()) return;
  const StatusCode code =
      CudaUsable() ? StatusCode::kInternal : StatusCode::kUnavailable;
  ThrowIfError(Status(code, what + ": " + err));
}

// One cudaMalloc allocation on one device, freed when the object goes. Python holds
// it and hands `address` to a framework that binds raw device pointers.
// Thread safety: immutable after construction; the allocation is freed by the
// destructor, which the caller must not run while a stream still uses the memory.
class DeviceMemory {
 public:
  // Allocates with the GIL released; raises (GIL held) when CUDA refuses.
  static std::unique_ptr<DeviceMemory> Create(int device, size_t nbytes) {
    if (!CudaUsable()) ThrowIfCudaError("no usable CUDA device", "cudaMalloc");
    void* ptr = nullptr;
    {
      py::gil_scoped_release release;
      ptr = CudaDeviceAlloc(device, nbytes == 0 ? 1 : nbytes);
    }
    if (ptr == nullptr) {
      ThrowIfError(
          Status(StatusCode::kInternal, "cudaMalloc of " + std::to_string(nbytes) +
                                            " bytes on device " +
                                            std::to_string(device) + " failed"));
    }
    return std::unique_ptr<DeviceMemory>(new DeviceMemory(device, nbytes, ptr));
  }
  ~DeviceMemory() { CudaDeviceFree(memory_); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  uintptr_t address() const { return reinterpret_cast<uintptr_t>(memory_); }
  size_t nbytes() const { return nbytes_; }
  int device() const { return device_; }

 private:
  DeviceMemory(int device, size_t nbytes, void* memory)
      : device_(device), nbytes_(nbytes), memory_(memory) {}

  int device_;
  size_t nbytes_;
  void* memory_;
};

void* AsPointer(uintptr_t address) { return reinterpret_cast<void*>(address); }

}  // namespace

void RegisterCuda(py::module_& m) {
  py::class_<DeviceMemory>(m, "DeviceMemory",
                           "One device allocation (cudaMalloc), freed with the object.")
      .def(py::init(&DeviceMemory::Create), py::arg("device"), py::arg("nbytes"))
      .def_property_readonly("address", &DeviceMemory::address)
      .def_property_readonly("nbytes", &DeviceMemory::nbytes)
      .def_property_readonly("device", &DeviceMemory::device);
  m.def(
      "cuda_set_device",
      [](int device) {
        std::string err;
        {
          py::gil_scoped_release release;
          err = CudaSetDevice(device);
        }
        ThrowIfCudaError(err, "cudaSetDevice(" + std::to_string(device) + ")");
      },
      py::arg("device"), "Makes `device` the calling thread's current CUDA device.");
  m.def(
      "cuda_copy_async",
      [](uintptr_t dst, uintptr_t src, size_t nbytes, uintptr_t stream,
         bool to_device) {
        std::string err;
        {
          py::gil_scoped_release release;
          err = to_device ? CudaCopyHostToDevice(AsPointer(dst), AsPointer(src), nbytes,
                                                 AsPointer(stream))
                          : CudaCopyDeviceToHost(AsPointer(dst), AsPointer(src), nbytes,
                                                 AsPointer(stream));
        }
        ThrowIfCudaError(err, "cudaMemcpyAsync");
      },
      py::arg("dst"), py::arg("src"), py::arg("nbytes"), py::arg("stream"),
      py::arg("to_device"),
      "Queues one host->device (to_device) or device->host copy on `stream` (raw "
      "addresses; asynchronous from pinned memory).");
  m.def(
      "cuda_stream_sync",
      [](uintptr_t stream) {
        std::string err;
        {
          py::gil_scoped_release release;
          err = CudaStreamSync(AsPointer(stream));
        }
        ThrowIfCudaError(err, "cudaStreamSynchronize");
      },
      py::arg("stream"), "Waits, GIL released, for the work queued on `stream`.");
  m.def("device_to_host_copies", &DeviceToHostCopies,
        "Device->host tensor copies the core made so far (tensor_memory.h)");
  m.def("cuda_device_count", [] {
    py::gil_scoped_release release;  // the first call probes the driver
    return CudaDeviceCount();
  });
  m.def(
      "cuda_is_pinned",
      [](uintptr_t address) {
        return CudaIsPinned(reinterpret_cast<const void*>(address));
      },
      py::arg("address"), "True when the host address is page-locked memory.");
  m.def(
      "arena_array",
      [](size_t nbytes, std::shared_ptr<ServerContext> context) {
        ArenaBuffer block;
        {
          py::gil_scoped_release release;
          block = ArenaOf(context)->Allocate(nbytes);
        }
        if (!block) throw std::bad_alloc();
        // The array keeps the block (and so the arena memory) alive.
        auto* holder = new ArenaBuffer(block);
        py::capsule owner(holder, [](void* p) { delete static_cast<ArenaBuffer*>(p); });
        return py::array(py::dtype("uint8"), {static_cast<py::ssize_t>(nbytes)}, {},
                         block->data(), owner);
      },
      py::arg("nbytes"), py::arg("context") = nullptr,
      "A writable uint8 array over one buffer of the context's tensor arena (the "
      "memory gathered batches live in), for staging checks and benchmarks.");
  m.def(
      "h2d_copy_seconds",
      [](const std::string& source, size_t bytes, int iterations, int device,
         std::shared_ptr<ServerContext> context) {
        py::gil_scoped_release release;
        return CopySeconds(source, bytes, iterations, device, context);
      },
      py::arg("source"), py::arg("bytes"), py::arg("iterations"), py::arg("device") = 0,
      py::arg("context") = nullptr);
}

}  // namespace tritonx::bindings
