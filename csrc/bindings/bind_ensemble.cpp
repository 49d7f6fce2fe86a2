// Ensemble models: a core Model whose scheduler runs the ensemble's steps on the
// server's composing models (core/ensemble_scheduler.h). It has no instances.
#include "core/ensemble_scheduler.h"
#include "core/model.h"
#include "core/server_context.h"
#include "pybind_common.h"

namespace tritonx::bindings {

using StepTuple =
    std::tuple<std::string, int64_t, std::vector<std::pair<std::string, std::string>>,
               std::vector<std::pair<std::string, std::string>>, std::string>;

void RegisterEnsemble(py::module_& m) {
  m.def(
      "make_ensemble_model",
      [](const ModelSpec& spec, const std::vector<StepTuple>& steps,
         std::shared_ptr<ServerContext> context) {
        auto ensemble = std::make_shared<EnsembleSpec>();
        for (const auto& [name, version, inputs, outputs, ns] : steps) {
          ensemble->steps.push_back({name, version, inputs, outputs, ns});
        }
        SchedulerConfig config;
        config.ensemble = std::move(ensemble);
        std::shared_ptr<Model> model;
        {
          py::gil_scoped_release release;
          model = std::make_shared<Model>(
              spec, config, std::vector<std::shared_ptr<Executor>>(), context.get());
        }
        return WrapModel(std::move(model));
      },
      py::arg("spec"), py::arg("steps"), py::arg("context") = nullptr,
      "An ensemble Model: `steps` are (model_name, model_version (-1: latest), "
      "input_map [(model input, ensemble tensor)], output_map [(model output, "
      "ensemble tensor)], model_namespace); composing models are found in "
      "`context`'s registry per request.");
}

}  // namespace tritonx::bindings
