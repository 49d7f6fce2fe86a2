#include "ensemble_spec.h"

#include <algorithm>
#include <unordered_map>

namespace tritonx {

EnsemblePlan::EnsemblePlan(const ModelSpec& ensemble, const EnsembleSpec& spec)
    : model(ensemble) {
  auto id_of = [this](const std::string& name) {
    const int found = TensorId(name);
    if (found >= 0) return found;
    tensor_names.push_back(name);
    consumers.emplace_back();
    producer.push_back(-1);
    return static_cast<int>(tensor_names.size()) - 1;
  };
  for (const TensorSpec& input : model.inputs) input_ids.push_back(id_of(input.name));
  for (const TensorSpec& output : model.outputs) {
    output_ids.push_back(id_of(output.name));
  }
  for (const EnsembleStepSpec& step_spec : spec.steps) {
    Step step;
    step.model_name = step_spec.model_name;
    step.model_namespace = step_spec.model_namespace;
    if (step_spec.model_version >= 0) {
      step.version = std::to_string(step_spec.model_version);
    }
    const int index = static_cast<int>(steps.size());
    // Inputs in config order. (Triton 2.51 adds a step's inputs in its protobuf
    // map's order, which is seeded per process: which of several wrong inputs a
    // composing model names differs from run to run there.)
    for (const auto& [model_tensor, tensor] : step_spec.input_map) {
      const int id = id_of(tensor);
      step.inputs.push_back({model_tensor, id});
      auto& readers = consumers[id];
      if (std::find(readers.begin(), readers.end(), index) == readers.end()) {
        readers.push_back(index);
      }
    }
    for (const auto& [model_tensor, tensor] : step_spec.output_map) {
      const int id = id_of(tensor);
      step.outputs.push_back({model_tensor, id});
      producer[id] = index;
    }
    steps.push_back(std::move(step));
  }
  ensemble_io.assign(tensor_names.size(), nullptr);
  for (size_t i = 0; i < input_ids.size(); ++i) {
    ensemble_io[input_ids[i]] = &model.inputs[i];
  }
  std::unordered_map<std::string, int> by_name;
  for (size_t i = 0; i < output_ids.size(); ++i) {
    ensemble_io[output_ids[i]] = &model.outputs[i];
    by_name.emplace(model.outputs[i].name, output_ids[i]);
  }
  for (const auto& [name, id] : by_name) response_order.push_back(id);
}

int EnsemblePlan::TensorId(const std::string& name) const {
  for (size_t i = 0; i < tensor_names.size(); ++i) {
    if (tensor_names[i] == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace tritonx
