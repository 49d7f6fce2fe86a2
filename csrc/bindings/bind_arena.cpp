// Host tensor arena statistics (for metrics), CUDA availability and stream pools.
#include "core/cuda_runtime.h"
#include "core/logging.h"
#include "core/stream_pool.h"
#include "core/tensor_arena.h"
#include "pybind_common.h"

namespace tritonx::bindings {

void RegisterArena(py::module_& m) {
  m.def("arena_stats", [] {
    ArenaStats s;
    {
      // The first call may probe CUDA, which can wait on other threads.
      py::gil_scoped_release release;
      s = TensorArena::Global()->Stats();
    }
    py::dict out;
    out["reserved_bytes"] = s.reserved_bytes;
    out["in_use_bytes"] = s.in_use_bytes;
    out["peak_in_use_bytes"] = s.peak_in_use_bytes;
    out["allocations"] = s.allocations;
    out["reuses"] = s.reuses;
    out["pinned"] = s.pinned;
    return out;
  });
  m.def("cuda_usable", [] {
    py::gil_scoped_release release;  // the first call probes the driver
    return CudaUsable();
  });
#ifdef TRITONX_ENABLE_CUDA
  m.attr("cuda_built") = true;
#else
  m.attr("cuda_built") = false;
#endif

  py::class_<StreamPool, std::shared_ptr<StreamPool>>(
      m, "StreamPool", "One CUDA stream per instance; streams are 0 without a GPU")
      .def(py::init([](size_t count, int device) {
             py::gil_scoped_release release;  // creating streams may probe the driver
             return std::make_shared<StreamPool>(count, device);
           }),
           py::arg("count"), py::arg("device") = -1,
           "`count` streams on `device` (-1: the calling thread's current one)")
      .def_property_readonly("device", &StreamPool::device)
      .def("get",
           [](const StreamPool& pool, size_t index) {
             return reinterpret_cast<uintptr_t>(pool.Get(index));
           })
      .def("__len__", &StreamPool::size);

  m.def("set_verbose_logging", &SetVerboseLogging, py::arg("on"),
        "Whether the core builds and sends its verbose messages.");
  m.def("set_log_sink", [](py::object sink) {
    if (sink.is_none()) {
      SetLogSink(nullptr);
      return;
    }
    SetLogSink(
        [raw = sink.release().ptr()](LogLevel level, const std::string& message) {
          // Never block on the GIL here: the core logs from threads that other threads,
          // holding the GIL, may be waiting for. Without the GIL the message is queued
          // and written the next time one of our threads holds it.
          if (!Py_IsInitialized()) return;
          if (!PyGILState_Check()) {
            QueueLogMessage(raw, static_cast<int>(level), message);
            return;
          }
          try {
            py::handle fn(raw);
            fn(static_cast<int>(level), message);
          } catch (py::error_already_set& err) {
            err.discard_as_unraisable("tritonx: log sink");
          }
        });
  });
}

}  // namespace tritonx::bindings
