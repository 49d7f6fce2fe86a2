// SequenceBatching: the sequence batcher's settings (core/sequence_config.h), and
// set_sequence_batching, which puts them into a SchedulerConfig. Built by
// tritonx.config.to_core from the model config.
#include "core/scheduler_config.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

DataType DtypeOf(const std::string& name) {
  DataType dtype = DataTypeFromName(name);
  if (dtype == DataType::kInvalid) ThrowInvalidArg("unknown datatype '" + name + "'");
  return dtype;
}

SequenceControlKind KindOf(const std::string& kind) {
  if (kind == "CONTROL_SEQUENCE_START") return SequenceControlKind::kStart;
  if (kind == "CONTROL_SEQUENCE_END") return SequenceControlKind::kEnd;
  if (kind == "CONTROL_SEQUENCE_READY") return SequenceControlKind::kReady;
  if (kind == "CONTROL_SEQUENCE_CORRID") return SequenceControlKind::kCorrId;
  ThrowInvalidArg("unsupported sequence control kind '" + kind + "'");
}

using ControlTuple =
    std::tuple<std::string, std::string, std::string, py::bytes, py::bytes>;
using StateTuple = std::tuple<std::string, std::string, std::string, Shape,
                              std::optional<Shape>, std::optional<py::bytes>>;

}  // namespace

void RegisterSequence(py::module_& m) {
  py::class_<SequenceBatchingConfig>(m, "SequenceBatching")
      .def(
          py::init([](const std::string& strategy, uint64_t max_sequence_idle_us,
                      uint64_t max_queue_delay_us, float minimum_slot_utilization,
                      int32_t max_candidate_sequences,
                      std::vector<int32_t> preferred_batch_sizes,
                      bool preserve_ordering, const std::vector<ControlTuple>& controls,
                      const std::vector<StateTuple>& states, bool iterative_sequence) {
            SequenceBatchingConfig c;
            if (strategy == "direct") {
              c.strategy = SequenceStrategy::kDirect;
            } else if (strategy == "oldest") {
              c.strategy = SequenceStrategy::kOldest;
            } else {
              ThrowInvalidArg("unknown sequence batching strategy '" + strategy + "'");
            }
            c.max_sequence_idle_us = max_sequence_idle_us;
            c.max_queue_delay_us = max_queue_delay_us;
            c.minimum_slot_utilization = minimum_slot_utilization;
            c.max_candidate_sequences = max_candidate_sequences;
            c.preferred_batch_sizes = std::move(preferred_batch_sizes);
            c.preserve_ordering = preserve_ordering;
            c.iterative = iterative_sequence;
            for (const auto& [kind, name, dtype, off, on] : controls) {
              SequenceControl control;
              control.kind = KindOf(kind);
              control.name = name;
              control.dtype = DtypeOf(dtype);
              control.false_value = off;
              control.true_value = on;
              if (control.kind == SequenceControlKind::kCorrId) {
                c.corrid_dtype = control.dtype;
              }
              c.controls.push_back(std::move(control));
            }
            for (const auto& [input, output, dtype, dims, shape, data] : states) {
              SequenceStateSpec state;
              state.input_name = input;
              state.output_name = output;
              state.dtype = DtypeOf(dtype);
              state.dims = dims;
              if (shape && data) {
                state.has_initial = true;
                state.initial_shape = *shape;
                state.initial_data = *data;
              }
              c.states.push_back(std::move(state));
            }
            return c;
          }),
          py::arg("strategy") = "direct", py::arg("max_sequence_idle_us") = 1'000'000,
          py::arg("max_queue_delay_us") = 0, py::arg("minimum_slot_utilization") = 0.0f,
          py::arg("max_candidate_sequences") = 0,
          py::arg("preferred_batch_sizes") = std::vector<int32_t>(),
          py::arg("preserve_ordering") = false,
          py::arg("controls") = std::vector<ControlTuple>(),
          py::arg("states") = std::vector<StateTuple>(),
          py::arg("iterative_sequence") = false)
      .def_property_readonly(
          "strategy",
          [](const SequenceBatchingConfig& c) {
            return c.strategy == SequenceStrategy::kOldest ? "oldest" : "direct";
          })
      .def_readonly("max_sequence_idle_us",
                    &SequenceBatchingConfig::max_sequence_idle_us)
      .def_readonly("max_queue_delay_us", &SequenceBatchingConfig::max_queue_delay_us)
      .def_readonly("iterative_sequence", &SequenceBatchingConfig::iterative);

  m.def(
      "set_sequence_batching",
      [](SchedulerConfig& config, const SequenceBatchingConfig& sequence) {
        config.sequence = sequence;
      },
      py::arg("config"), py::arg("sequence"),
      "Makes `config` the sequence batcher's with these settings.");
}

}  // namespace tritonx::bindings
