// Tracer: the server's request sampler and its queue of finished traces. The Python
// side (tritonx.tracing) installs settings and drains traces into a file or spans.
#include "core/infer_request.h"
#include "core/model.h"
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
  out["span_id"] = record.span_id;
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

// The frontend stamps a request's trace may take from Python, by Triton's name (the
// trace keeps the name's pointer, so only these static strings are handed over).
const char* FrontendActivity(const std::string& name) {
  for (const char* known :
       {trace_activity::kHttpSendStart, trace_activity::kHttpSendEnd,
        trace_activity::kGrpcSendStart, trace_activity::kGrpcSendEnd}) {
    if (name == known) return known;
  }
  throw py::value_error("not a frontend trace activity: " + name);
}

InferenceRequest& RequestOf(const PyRequest& request) { return *request.request; }

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
              py::object otel_ids = py::none();
              if (!trace.otel_trace_id.empty()) {
                otel_ids = py::make_tuple(trace.otel_trace_id, trace.root_span_id);
              }
              py::dict parent;
              if (!trace.traceparent.empty()) parent["traceparent"] = trace.traceparent;
              if (!trace.tracestate.empty()) parent["tracestate"] = trace.tracestate;
              out.append(py::make_tuple(trace.setting_id, parent, records, otel_ids));
            }
            return out;
          },
          py::arg("timeout_ms"),
          "Finished traces as (setting_id, parent, [record, ...], otel_ids), the "
          "root record first; parent: the W3C headers the request came with "
          "(traceparent, tracestate as the exporter reads it), {} if none; otel_ids: "
          "(trace id hex, root span id) in OpenTelemetry "
          "mode, else None. Waits up to timeout_ms for one.")
      .def("close", &Tracer::Close, "Wakes and ends every drain.");

  // A request's trace, for the Python HTTP engine and BLS. Each is a no-op on a
  // request that is not traced.
  m.def(
      "trace_received",
      [](const PyRequest& request, uint64_t start_ns, uint64_t end_ns,
         const py::object& traceparent, const py::object& tracestate) {
        InferenceRequest& r = RequestOf(request);
        r.recv_start_ns = start_ns;
        r.recv_end_ns = end_ns;
        if (!traceparent.is_none()) r.traceparent = traceparent.cast<std::string>();
        if (!tracestate.is_none()) r.tracestate = tracestate.cast<std::string>();
      },
      py::arg("request"), py::arg("start_ns"), py::arg("end_ns"),
      py::arg("traceparent") = py::none(), py::arg("tracestate") = py::none(),
      "Before enqueueing: when the frontend began and finished reading the request "
      "(time.monotonic_ns, the core's clock) and the W3C trace context headers it "
      "came with.");
  m.def(
      "trace_stamp",
      [](const PyRequest& request, const std::string& activity) {
        const char* name = FrontendActivity(activity);
        if (RequestTrace* trace = RequestOf(request).trace.get()) trace->Record(name);
      },
      py::arg("request"), py::arg("activity"),
      "Records a frontend timestamp (HTTP_SEND_START, ...) now, if traced.");
  m.def(
      "trace_id",
      [](const PyRequest& request) -> uint64_t {
        RequestTrace* trace = RequestOf(request).trace.get();
        return trace != nullptr ? trace->id() : 0;
      },
      py::arg("request"), "The request's trace id (0: not traced).");
  m.def(
      "trace_context",
      [](const PyRequest& request) -> std::string {
        RequestTrace* trace = RequestOf(request).trace.get();
        return trace != nullptr ? trace->OtelContext() : std::string();
      },
      py::arg("request"),
      "OpenTelemetry mode: the W3C context of the request's span as JSON "
      "({\"traceparent\": ...}), what a python model's request.trace().get_context() "
      "returns; \"\" when not traced or in Triton mode.");
  m.def(
      "inherit_trace",
      [](const PyRequest& child, const PyRequest& parent) {
        const std::shared_ptr<RequestTrace>& trace = RequestOf(parent).trace;
        if (!trace) return false;
        RequestOf(child).trace = trace->SpawnChild();
        return true;
      },
      py::arg("child"), py::arg("parent"),
      "BLS: `child` (not enqueued yet) is traced as a child of `parent`'s trace "
      "(Triton's parent_id); false when the parent is not traced.");
  m.def(
      "inherit_trace_id",
      [](const PyRequest& child, const py::handle& model, uint64_t trace_id) {
        std::shared_ptr<RequestTrace> parent = ModelOf(model)->tracer()->Find(trace_id);
        if (!parent) return false;
        RequestOf(child).trace = parent->SpawnChild();
        return true;
      },
      py::arg("child"), py::arg("model"), py::arg("trace_id"),
      "inherit_trace for a parent known by its trace id (a stub process's BLS "
      "call); false when that trace has finished or never was.");
}

}  // namespace tritonx::bindings
