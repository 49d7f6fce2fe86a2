// Tracer: the server's request sampler and its queue of finished traces. The Python
// side (tritonx.tracing) installs settings and drains traces into a file or spans.
#include "core/trace.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

py::dict RecordToPy(const TraceRecord& record) {
  py::dict out;
  out["id"] = record.id;
  out["parent_id"] = record.parent_id;
  out["model_name"] = record.model_name;
  out["model_version"] = record.model_version;
  out["request_id"] = record.request_id;
  py::list stamps;
  for (const auto& stamp : record.stamps)
    stamps.append(py::make_tuple(stamp.name, stamp.ns));
  out["timestamps"] = stamps;
  py::list tensors;
  for (const auto& t : record.tensors) {
    tensors.append(py::make_tuple(t.activity, t.name, t.data, t.shape, t.dtype));
  }
  out["tensors"] = tensors;
  return out;
}

}  // namespace

void RegisterTrace(py::module_& m) {
  py::class_<TraceSetting, std::shared_ptr<TraceSetting>>(
      m, "TraceSetting", "One installed version of a trace setting")
      .def_readonly("id", &TraceSetting::id)
      .def_readonly("level", &TraceSetting::level)
      .def_property_readonly("count", &TraceSetting::count)
      .def_property_readonly("sampled", &TraceSetting::sampled);

  py::class_<Tracer, std::shared_ptr<Tracer>>(m, "Tracer",
                                              "The server's request sampler")
      .def(py::init([] { return std::make_shared<Tracer>(); }))
      .def_property_readonly("active", &Tracer::active)
      .def(
          "install",
          [](Tracer& self, const std::string& model, uint32_t level, uint32_t rate,
             int32_t count, bool valid, bool propagate) {
            auto setting = std::make_shared<TraceSetting>(
                self.NextSettingId(), level, rate, count, valid, propagate);
            self.Install(model, setting);
            return setting;
          },
          py::arg("model"), py::arg("level"), py::arg("rate"), py::arg("count"),
          py::arg("valid"), py::arg("propagate") = false,
          "Installs a new version of the global (model '') or a model's setting.")
      .def(
          "remove",
          [](Tracer& self, const std::string& model) { self.Install(model, nullptr); },
          py::arg("model"), "The model follows the global setting again.")
      .def(
          "drain",
          [](Tracer& self, int timeout_ms) {
            std::vector<CompletedTrace> done;
            {
              py::gil_scoped_release release;
              done = self.Drain(timeout_ms);
            }
            py::list out;
            for (const auto& trace : done) {
              py::list records;
              for (const auto& record : trace.records)
                records.append(RecordToPy(record));
              out.append(py::make_tuple(trace.setting_id, trace.traceparent, records));
            }
            return out;
          },
          py::arg("timeout_ms"),
          "Finished traces as (setting_id, traceparent, [record, ...]), the root "
          "first; waits up to timeout_ms for one.")
      .def("close", &Tracer::Close, "Wakes and ends every drain.");
}

}  // namespace tritonx::bindings
