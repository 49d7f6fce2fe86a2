// CUDA facts and helpers for the Python shell: device count (which GPUs KIND_GPU may
// name), pinned checks, arena views and the copy probe that benchmarks/bench_gpu.py
// compares the staging path against. Without a usable GPU they answer 0 / False /
// raise UnavailableError; nothing here needs a GPU to import.
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

}  // namespace

void RegisterCuda(py::module_& m) {
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
