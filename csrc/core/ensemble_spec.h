// EnsembleSpec: an ensemble's steps as the core sees them (Triton's
// ensemble_scheduling block), and EnsemblePlan, the graph precomputed from it once per
// ensemble model so that a request only walks integer indices.
//
// The config layer validates the graph with Triton's messages before the core sees
// it (unknown models, unmapped or unused tensors, cycles, types, shapes); the plan
// only relies on it being a DAG where each tensor has at most one producer.
//
// Thread safety: both are immutable after construction and shared freely.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model_spec.h"

namespace tritonx {

struct EnsembleStepSpec {
  std::string model_name;
  int64_t model_version = -1;  // -1: the highest ready version at request time
  // (composing model tensor, ensemble tensor) pairs.
  std::vector<std::pair<std::string, std::string>> input_map;
  std::vector<std::pair<std::string, std::string>> output_map;
  // The composing model's namespace (--model-namespacing), chosen when the ensemble
  // loaded: its own repository's model first, else the only model of that name.
  std::string model_namespace;
};

struct EnsembleSpec {
  std::vector<EnsembleStepSpec> steps;
};

struct EnsemblePlan {
  struct Binding {
    std::string model_tensor;  // the composing model's input/output name
    int tensor = 0;            // ensemble tensor id
  };
  struct Step {
    std::string model_name;
    std::string model_namespace;
    std::string version;  // "" for the latest ready version
    std::vector<Binding> inputs;
    std::vector<Binding> outputs;
  };

  // Builds the plan of `ensemble` (the ensemble model's own spec: its inputs and
  // outputs are ensemble tensors too). Keeps a copy of that spec.
  EnsemblePlan(const ModelSpec& ensemble, const EnsembleSpec& spec);
  EnsemblePlan(const EnsemblePlan&) = delete;
  EnsemblePlan& operator=(const EnsemblePlan&) = delete;

  int TensorId(const std::string& name) const;  // -1 when unknown

  const ModelSpec model;  // the ensemble's own spec
  std::vector<std::string> tensor_names;
  std::vector<Step> steps;
  std::vector<std::vector<int>> consumers;  // tensor id -> steps reading it
  std::vector<int> producer;                // tensor id -> step writing it, or -1
  std::vector<int> input_ids;               // ensemble input i -> tensor id
  std::vector<int> output_ids;              // ensemble output i -> tensor id
  // The output ids in the order a response lists them: Triton 2.51's, the walk of
  // its hash map of the outputs by name (libstdc++'s unordered_map, as here, filled
  // in config order), which clients see in an HTTP answer's "outputs".
  std::vector<int> response_order;
  // tensor id -> the ensemble input or output spec (in `model`), null for tensors
  // internal to the ensemble.
  std::vector<const TensorSpec*> ensemble_io;
};

}  // namespace tritonx
