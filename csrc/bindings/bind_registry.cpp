// ModelRegistry: shared by the Python side (HTTP, model manager) and the C++ gRPC
// server, hence held by std::shared_ptr.
#include "core/model_registry.h"
#include "core/server_context.h"
#include "pybind_common.h"

namespace tritonx::bindings {

// bind_response_cache.cpp
void AddResponseCacheMethods(
    py::class_<ServerContext, std::shared_ptr<ServerContext>>& context);

void RegisterRegistry(py::module_& m) {
  m.def(
      "parse_model_version",
      [](const py::object& text) -> py::object {
        const std::string version = TextFromPy(text, "model version");
        if (version.empty()) return py::none();
        int64_t parsed = 0;
        ThrowIfError(ParseModelVersion(version, &parsed));
        return py::int_(parsed);
      },
      py::arg("text"),
      "A client's version string as Triton reads it: None for '' (the latest), "
      "else the number; InvalidArgumentError with Triton's words.");
  py::class_<ModelRegistry, std::shared_ptr<ModelRegistry>>(
      m, "ModelRegistry", "The model versions the frontends can reach")
      .def(py::init<>())
      .def("set_namespacing", &ModelRegistry::SetNamespacing, py::arg("enabled"))
      .def(
          "add",
          [](ModelRegistry& self, const py::handle& model, const std::string& ns) {
            auto core = ModelOf(model);
            // Replacing an entry may drop the last reference to the old model, whose
            // destructor joins workers that may need the GIL.
            py::gil_scoped_release release;
            self.Add(std::move(core), ns);
          },
          py::arg("model"), py::arg("namespace") = "")
      .def(
          "remove",
          [](ModelRegistry& self, const std::string& name, int64_t version,
             const std::string& ns) {
            py::gil_scoped_release release;  // same reason as add
            self.Remove({ns, name}, version);
          },
          py::arg("name"), py::arg("version"), py::arg("namespace") = "")
      .def(
          "set_known",
          [](ModelRegistry& self, const std::string& name, bool known,
             const std::string& ns) {
            self.SetKnown({ns, name}, known);
          },
          py::arg("name"), py::arg("known"), py::arg("namespace") = "")
      .def(
          "set_resolvable",
          [](ModelRegistry& self, const std::string& name, bool resolvable,
             const std::string& ns) {
            self.SetResolvable({ns, name}, resolvable);
          },
          py::arg("name"), py::arg("resolvable"), py::arg("namespace") = "")
      .def(
          "set_unavailable",
          [](ModelRegistry& self, const std::string& name, int64_t version,
             const std::string& ns) {
            self.SetUnavailable({ns, name}, version);
          },
          py::arg("name"), py::arg("version"), py::arg("namespace") = "")
      .def("set_server_not_ready", &ModelRegistry::SetServerNotReady)
      .def(
          "find",
          // Names come from clients: a value that is not UTF-8 text fails as
          // InvalidArgumentError, not as a pybind11 overload error.
          [](const ModelRegistry& self, const py::object& name,
             const py::object& version) {
            std::shared_ptr<Model> model;
            ThrowIfError(self.Find(TextFromPy(name, "model name"),
                                   TextFromPy(version, "model version"), &model));
            return WrapModel(std::move(model));
          },
          py::arg("name"), py::arg("version") = "")
      .def("models", [](const ModelRegistry& self) {
        py::list out;
        for (auto& model : self.All()) out.append(WrapModel(model));
        return out;
      });

  py::class_<ServerContext, std::shared_ptr<ServerContext>> context(
      m, "ServerContext",
      "What one server's models share: the registry, the arena, the admission limit");
  context
      .def(py::init([](int64_t pinned_pool_bytes) {
             // --pinned-memory-pool-byte-size: < 0 keeps the process's shared pinned
             // pool; 0 turns pinning off (Triton: no pinned pool); N bounds the
             // pool's cached bytes at N.
             std::shared_ptr<TensorArena> arena;
             if (pinned_pool_bytes >= 0) {
               py::gil_scoped_release release;  // may probe the driver
               arena = TensorArena::Create(static_cast<size_t>(pinned_pool_bytes),
                                           pinned_pool_bytes > 0);
             }
             return std::make_shared<ServerContext>(std::move(arena));
           }),
           py::arg("pinned_pool_bytes") = -1)
      .def("arena_stats",
           [](const ServerContext& self) {
             ArenaStats s;
             {
               py::gil_scoped_release release;
               s = self.arena()->Stats();
             }
             py::dict out;
             out["reserved_bytes"] = s.reserved_bytes;
             out["in_use_bytes"] = s.in_use_bytes;
             out["pinned"] = s.pinned;
             return out;
           })
      .def_property_readonly("registry", &ServerContext::registry)
      .def_property_readonly("shared_memory", &ServerContext::shared_memory)
      .def_property_readonly("tracer", &ServerContext::tracer)
      .def(
          "set_max_inflight_requests",
          [](ServerContext& self, int64_t limit) {
            self.inflight_limit()->SetLimit(limit < 0 ? 0 : limit);
          },
          py::arg("limit"),
          "Bound on requests accepted and not yet answered, across the server's "
          "models (0: none).")
      .def("inflight_requests",
           [](const ServerContext& self) { return self.inflight_limit()->inflight(); })
      .def(
          "configure_rate_limiter",
          [](ServerContext& self, bool enabled,
             const std::vector<std::tuple<std::string, uint64_t, int>>& resources) {
            // Triton keeps the smallest count when a resource is given twice.
            RateLimiter::ResourceMap counts;
            for (const auto& [name, count, device] : resources) {
              auto& per_device = counts[device];
              auto it = per_device.find(name);
              if (it == per_device.end() || it->second > count)
                per_device[name] = count;
            }
            self.rate_limiter()->Configure(enabled, std::move(counts));
          },
          py::arg("enabled"), py::arg("resources"),
          "--rate-limit / --rate-limit-resource: resources are (name, count, device), "
          "device -1 for every device. Before any model loads.")
      .def(
          "configure_latency_summaries",
          [](ServerContext& self, const std::vector<double>& quantiles) {
            auto options = std::make_shared<LatencySummaryOptions>();
            options->quantiles = quantiles;
            self.SetLatencySummaries(std::move(options));
          },
          py::arg("quantiles"),
          "--metrics-config summary_latencies=true: models built afterwards keep "
          "latency summaries with these quantiles. Before any model loads.")
      .def("rate_limiter_limits",
           [](const ServerContext& self) { return self.rate_limiter()->Limits(); });
  AddResponseCacheMethods(context);
}

}  // namespace tritonx::bindings
