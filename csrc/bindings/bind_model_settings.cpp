// The value types a Model is built from: tensor specs, the model spec, scheduler and
// queue-policy settings, a custom batching strategy library, and per-instance rate
// limits. Plain copies (the strategy shared); Python owns them.
#include "core/batch_strategy.h"
#include "core/model.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

DataType ParseDataType(const std::string& name) {
  DataType dtype = DataTypeFromName(name);
  if (dtype == DataType::kInvalid)
    throw py::value_error("unknown datatype '" + name + "'");
  return dtype;
}

// model_config.proto's BatchInput.Kind names.
BatchInputKind ParseBatchInputKind(const std::string& name) {
  static const std::pair<const char*, BatchInputKind> kKinds[] = {
      {"BATCH_ELEMENT_COUNT", BatchInputKind::kElementCount},
      {"BATCH_ACCUMULATED_ELEMENT_COUNT", BatchInputKind::kAccumulatedElementCount},
      {"BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO",
       BatchInputKind::kAccumulatedElementCountWithZero},
      {"BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", BatchInputKind::kMaxElementCountAsShape},
      {"BATCH_ITEM_SHAPE", BatchInputKind::kItemShape},
      {"BATCH_ITEM_SHAPE_FLATTEN", BatchInputKind::kItemShapeFlatten},
  };
  for (const auto& [kind_name, kind] : kKinds) {
    if (name == kind_name) return kind;
  }
  throw py::value_error("unknown batch input kind '" + name + "'");
}

// (kind, target_names, datatype, source_input) as config/to_core.py builds them.
using BatchInputTuple =
    std::tuple<std::string, std::vector<std::string>, std::string, std::string>;
// (target_names, source_input): kind BATCH_SCATTER_WITH_INPUT_SHAPE, the only one.
using BatchOutputTuple = std::tuple<std::vector<std::string>, std::string>;

}  // namespace

void RegisterModelSettings(py::module_& m) {
  py::class_<TensorSpec>(m, "TensorSpec")
      .def(py::init([](std::string name, const std::string& datatype,
                       std::vector<int64_t> dims, bool optional,
                       std::optional<std::vector<int64_t>> reshape,
                       std::vector<std::string> labels, bool allow_ragged_batch) {
             TensorSpec spec;
             spec.labels = std::move(labels);
             spec.allow_ragged_batch = allow_ragged_batch;
             spec.name = std::move(name);
             spec.dtype = ParseDataType(datatype);
             spec.dims = std::move(dims);
             spec.optional = optional;
             if (reshape) {
               spec.has_reshape = true;
               spec.reshape = *reshape;
             }
             return spec;
           }),
           py::arg("name"), py::arg("datatype"), py::arg("dims"),
           py::arg("optional") = false, py::arg("reshape") = py::none(),
           py::arg("labels") = std::vector<std::string>(),
           py::arg("allow_ragged_batch") = false)
      .def_readonly("labels", &TensorSpec::labels)
      .def_readonly("allow_ragged_batch", &TensorSpec::allow_ragged_batch)
      .def_readonly("name", &TensorSpec::name)
      .def_property_readonly(
          "datatype",
          [](const TensorSpec& s) { return std::string(DataTypeName(s.dtype)); })
      .def_readonly("dims", &TensorSpec::dims)
      .def_readonly("optional", &TensorSpec::optional)
      .def_property_readonly("reshape", [](const TensorSpec& s) -> py::object {
        if (!s.has_reshape) return py::none();
        return py::cast(s.reshape);
      });

  py::class_<QueuePolicy>(m, "QueuePolicy")
      .def(py::init([](const std::string& timeout_action, uint64_t default_timeout_us,
                       bool allow_timeout_override, uint32_t max_queue_size) {
             QueuePolicy policy;
             if (timeout_action == "REJECT") {
               policy.timeout_action = TimeoutAction::kReject;
             } else if (timeout_action == "DELAY") {
               policy.timeout_action = TimeoutAction::kDelay;
             } else {
               throw py::value_error("timeout_action must be REJECT or DELAY");
             }
             policy.default_timeout_us = default_timeout_us;
             policy.allow_timeout_override = allow_timeout_override;
             policy.max_queue_size = max_queue_size;
             return policy;
           }),
           py::arg("timeout_action") = "REJECT", py::arg("default_timeout_us") = 0,
           py::arg("allow_timeout_override") = false, py::arg("max_queue_size") = 0)
      .def_property_readonly(
          "timeout_action",
          [](const QueuePolicy& p) {
            return p.timeout_action == TimeoutAction::kReject ? "REJECT" : "DELAY";
          })
      .def_readonly("default_timeout_us", &QueuePolicy::default_timeout_us)
      .def_readonly("allow_timeout_override", &QueuePolicy::allow_timeout_override)
      .def_readonly("max_queue_size", &QueuePolicy::max_queue_size);

  py::class_<SchedulerConfig>(m, "SchedulerConfig")
      .def(
          py::init([](bool dynamic_batching, std::vector<int32_t> preferred_batch_sizes,
                      uint64_t max_queue_delay_us, bool preserve_ordering,
                      uint32_t priority_levels, uint32_t default_priority_level,
                      std::optional<QueuePolicy> default_queue_policy,
                      std::map<uint32_t, QueuePolicy> priority_queue_policy) {
            SchedulerConfig config;
            config.dynamic_batching = dynamic_batching;
            config.preferred_batch_sizes = std::move(preferred_batch_sizes);
            config.max_queue_delay_us = max_queue_delay_us;
            config.preserve_ordering = preserve_ordering;
            config.priority_levels = priority_levels;
            config.default_priority_level = default_priority_level;
            if (default_queue_policy)
              config.default_queue_policy = *default_queue_policy;
            config.priority_queue_policy = std::move(priority_queue_policy);
            return config;
          }),
          py::arg("dynamic_batching") = false,
          py::arg("preferred_batch_sizes") = std::vector<int32_t>(),
          py::arg("max_queue_delay_us") = 0, py::arg("preserve_ordering") = false,
          py::arg("priority_levels") = 0, py::arg("default_priority_level") = 0,
          py::arg("default_queue_policy") = py::none(),
          py::arg("priority_queue_policy") = std::map<uint32_t, QueuePolicy>())
      .def_readonly("dynamic_batching", &SchedulerConfig::dynamic_batching)
      .def_readonly("preferred_batch_sizes", &SchedulerConfig::preferred_batch_sizes)
      .def_readonly("max_queue_delay_us", &SchedulerConfig::max_queue_delay_us)
      .def_readonly("preserve_ordering", &SchedulerConfig::preserve_ordering)
      .def_readonly("priority_levels", &SchedulerConfig::priority_levels)
      .def_readonly("default_priority_level", &SchedulerConfig::default_priority_level)
      .def_readonly("default_queue_policy", &SchedulerConfig::default_queue_policy)
      .def_readonly("priority_queue_policy", &SchedulerConfig::priority_queue_policy)
      .def_readwrite("batch_strategy", &SchedulerConfig::batch_strategy);

  py::class_<BatchStrategy, std::shared_ptr<BatchStrategy>>(m, "BatchStrategy")
      .def_static(
          "load",
          [](const std::string& path, const std::string& model_name, uint64_t version,
             const std::string& config_json) {
            std::shared_ptr<BatchStrategy> strategy;
            Status status;
            {
              // The library's initializer runs here; it may take its time.
              py::gil_scoped_release release;
              status = BatchStrategy::Load(
                  path, BatchStrategyModel{model_name, version, config_json},
                  &strategy);
            }
            ThrowIfError(status);
            return strategy;
          },
          py::arg("path"), py::arg("model_name"), py::arg("version"),
          py::arg("config_json"))
      .def_property_readonly("enabled", &BatchStrategy::enabled)
      .def_property_readonly("path", &BatchStrategy::path);

  py::class_<InstanceRateLimit>(m, "InstanceRateLimit")
      .def(
          py::init(
              [](const std::vector<std::tuple<std::string, uint64_t, bool>>& resources,
                 uint32_t priority, int device) {
                InstanceRateLimit limit;
                for (const auto& [name, count, global] : resources) {
                  limit.resources.push_back({name, count, global});
                }
                limit.priority = priority;
                limit.device = device;
                return limit;
              }),
          py::arg("resources") = std::vector<std::tuple<std::string, uint64_t, bool>>(),
          py::arg("priority") = 0, py::arg("device") = 0)
      .def_readonly("priority", &InstanceRateLimit::priority)
      .def_readonly("device", &InstanceRateLimit::device);

  py::class_<ModelSpec>(m, "ModelSpec")
      .def(py::init([](std::string name, int64_t version, int32_t max_batch_size,
                       std::vector<TensorSpec> inputs, std::vector<TensorSpec> outputs,
                       bool decoupled, bool response_cache,
                       const std::vector<BatchInputTuple>& batch_inputs,
                       const std::vector<BatchOutputTuple>& batch_outputs,
                       std::vector<std::string> state_outputs) {
             ModelSpec spec;
             for (const auto& [kind, targets, datatype, source] : batch_inputs) {
               DataType dtype = ParseDataType(datatype);
               if (dtype != DataType::kInt32 && dtype != DataType::kFp32) {
                 throw py::value_error("batch input data type must be INT32 or FP32");
               }
               spec.batch_inputs.push_back(
                   {ParseBatchInputKind(kind), targets, dtype, source});
             }
             for (const auto& [targets, source] : batch_outputs) {
               spec.batch_outputs.push_back({targets, source});
             }
             spec.name = std::move(name);
             spec.version = version;
             spec.max_batch_size = max_batch_size;
             spec.decoupled = decoupled;
             spec.response_cache = response_cache;
             spec.inputs = std::move(inputs);
             spec.outputs = std::move(outputs);
             spec.state_outputs = std::move(state_outputs);
             return spec;
           }),
           py::arg("name"), py::arg("version"), py::arg("max_batch_size"),
           py::arg("inputs"), py::arg("outputs"), py::arg("decoupled") = false,
           py::arg("response_cache") = false,
           py::arg("batch_inputs") = std::vector<BatchInputTuple>(),
           py::arg("batch_outputs") = std::vector<BatchOutputTuple>(),
           py::arg("state_outputs") = std::vector<std::string>())
      .def_readonly("name", &ModelSpec::name)
      .def_readonly("decoupled", &ModelSpec::decoupled)
      .def_readonly("version", &ModelSpec::version)
      .def_readonly("max_batch_size", &ModelSpec::max_batch_size)
      .def_readonly("inputs", &ModelSpec::inputs)
      .def_readonly("outputs", &ModelSpec::outputs);
}

}  // namespace tritonx::bindings
