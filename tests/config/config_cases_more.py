"""The models of the config differential test, part 2: sequence batching, the
transaction policy, versions, warmup, optimization and the remaining fields."""

from __future__ import annotations

from config_cases import py, tensors
from config_diff import MODEL_PY, Case

# A sequence model's tensors, batched by up to 4.
SEQ = "max_batch_size: 4\n"


def seq(block: str, strategy: str = "") -> str:
    return py(SEQ + f"sequence_batching {{ {strategy} {block} }}\n")


def control(name: str, kind: str, values: str, data_type: str = "") -> str:
    dtype = f"data_type: {data_type} " if data_type else ""
    return (
        f'control_input [ {{ name: "{name}" control [ {{ kind: {kind} {dtype}'
        f"{values} }} ] }} ]"
    )


START_OK = control("START", "CONTROL_SEQUENCE_START", "int32_false_true: [ 0, 1 ]")

SEQUENCES = [
    Case("sb_empty", seq("")),
    Case("sb_unbatched", py("sequence_batching { }\n")),
    Case("sb_direct", seq(START_OK, "direct { }")),
    Case("sb_oldest", seq(START_OK, "oldest { max_candidate_sequences: 4 }")),
    Case("sb_oldest_preferred_gt", seq("", "oldest { preferred_batch_size: [ 8 ] }")),
    Case("sb_direct_util_bad", seq("", "direct { minimum_slot_utilization: 1.5 }")),
    Case("sb_idle", seq("max_sequence_idle_microseconds: 5000")),
    Case("sb_control_no_values", seq(control("S", "CONTROL_SEQUENCE_START", ""))),
    Case(
        "sb_control_two_value_kinds",
        seq(
            control(
                "S",
                "CONTROL_SEQUENCE_START",
                "int32_false_true: [ 0, 1 ] fp32_false_true: [ 0, 1 ]",
            )
        ),
    ),
    Case(
        "sb_control_one_value",
        seq(control("S", "CONTROL_SEQUENCE_END", "int32_false_true: [ 1 ]")),
    ),
    Case(
        "sb_control_bool",
        seq(control("S", "CONTROL_SEQUENCE_READY", "bool_false_true: [ false, true ]")),
    ),
    Case(
        "sb_corrid_fp32",
        seq(control("C", "CONTROL_SEQUENCE_CORRID", "", "TYPE_FP32")),
    ),
    Case(
        "sb_corrid_no_type",
        seq(control("C", "CONTROL_SEQUENCE_CORRID", "")),
    ),
    Case(
        "sb_corrid_uint64",
        seq(control("C", "CONTROL_SEQUENCE_CORRID", "", "TYPE_UINT64")),
    ),
    Case(
        "sb_control_same_name",
        seq(
            START_OK
            + " "
            + control("START", "CONTROL_SEQUENCE_END", "int32_false_true: [ 0, 1 ]")
        ),
    ),
    Case(
        "sb_control_no_name",
        seq(
            "control_input [ { control [ { kind: CONTROL_SEQUENCE_START "
            "int32_false_true: [ 0, 1 ] } ] } ]"
        ),
    ),
    Case(
        "sb_two_starts",
        seq(
            START_OK
            + " "
            + control("S2", "CONTROL_SEQUENCE_START", "int32_false_true: [ 0, 1 ]")
        ),
    ),
    Case(
        "sb_state",
        seq(
            'state [ { input_name: "IN_STATE", output_name: "OUT_STATE", '
            "data_type: TYPE_FP32, dims: [ 1 ] } ]"
        ),
    ),
    Case(
        "sb_state_no_dims",
        seq(
            'state [ { input_name: "IN_STATE", output_name: "OUT_STATE", '
            "data_type: TYPE_FP32 } ]"
        ),
    ),
    Case(
        "sb_and_db",
        py(SEQ + "sequence_batching { }\ndynamic_batching { }\n"),
    ),
]

TRANSACTION_AND_CACHE = [
    Case("decoupled", py("model_transaction_policy { decoupled: true }\n")),
    Case(
        "decoupled_db",
        py(
            "max_batch_size: 4\ndynamic_batching { }\n"
            "model_transaction_policy { decoupled: true }\n"
        ),
    ),
    Case(
        "decoupled_cache",
        py(
            "model_transaction_policy { decoupled: true }\n"
            "response_cache { enable: true }\n"
        ),
    ),
    Case("response_cache", py("response_cache { enable: true }\n")),
    Case("response_cache_seq", seq("") + "response_cache { enable: true }\n"),
]

VERSIONS = [
    Case("vp_specific_missing", py("version_policy { specific { versions: [ 2 ] } }")),
    Case("vp_specific_mixed", py("version_policy { specific { versions: [ 1, 3 ] } }")),
    Case("vp_latest_zero", py("version_policy { latest { num_versions: 0 } }")),
    Case("vp_latest_two", py("version_policy { latest { num_versions: 2 } }")),
    Case("vp_all", py("version_policy { all { } }")),
    Case(
        "vp_specific_two",
        py("version_policy { specific { versions: [ 1, 2 ] } }"),
        files={"1/model.py": MODEL_PY, "2/model.py": MODEL_PY},
    ),
    Case(
        "vp_one_bad_version",
        py("version_policy { all { } }"),
        files={"1/model.py": MODEL_PY, "2/model.py": "def (:\n"},
    ),
]


# execute fails every request (an error response per request).
RAISING_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(error=pb_utils.TritonError("no warmup"))
            for _ in requests
        ]
"""

# initialize raises: the most common way a Python model fails its load.
INIT_RAISES_PY = """\
class TritonPythonModel:
    def initialize(self, args):
        raise ValueError("cannot start")

    def execute(self, requests):
        return []
"""


def warmup(inputs: str, extra: str = "") -> str:
    return (
        f'model_warmup [ {{ name: "w" batch_size: 1 {extra} inputs [ {inputs} ] }} ]\n'
    )


WARMUP = [
    Case(
        "warmup_ok",
        py(
            warmup(
                '{ key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 4 ] '
                "zero_data: true } }"
            )
        ),
    ),
    Case(
        "warmup_no_datatype",
        py(warmup('{ key: "INPUT0" value { dims: [ 4 ] zero_data: true } }')),
    ),
    Case(
        "warmup_unknown_input",
        py(
            warmup(
                '{ key: "NOPE" value { data_type: TYPE_FP32 dims: [ 4 ] '
                "zero_data: true } }"
            )
        ),
    ),
    Case(
        "warmup_variable_dim",
        py(
            warmup(
                '{ key: "INPUT0" value { data_type: TYPE_FP32 dims: [ -1 ] '
                "zero_data: true } }"
            )
        ),
    ),
    Case(
        "warmup_wrong_type",
        py(
            warmup(
                '{ key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 4 ] '
                "zero_data: true } }"
            )
        ),
    ),
    Case(
        "warmup_missing_file",
        py(
            warmup(
                '{ key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 4 ] '
                'input_data_file: "nope" } }'
            )
        ),
    ),
    Case(
        "warmup_batch_unbatched",
        py(
            'model_warmup [ { name: "w" batch_size: 8 inputs { key: "INPUT0" '
            "value { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]\n"
        ),
    ),
    Case(
        "warmup_no_data_kind",
        py(warmup('{ key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 4 ] } }')),
    ),
    Case(
        "warmup_count",
        py(
            warmup(
                '{ key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 4 ] '
                "random_data: true } }",
                "count: 2",
            )
        ),
    ),
    Case("warmup_no_inputs", py('model_warmup [ { name: "w" batch_size: 1 } ]\n')),
    Case(
        "warmup_batch_zero",  # skipped by Triton: its wrong type never matters
        py(
            'model_warmup [ { name: "w" batch_size: 0 inputs { key: "INPUT0" '
            "value { data_type: TYPE_INT32 dims: [ 4 ] zero_data: true } } } ]\n"
        ),
    ),
    Case(
        "warmup_file_short",
        py(
            warmup(
                '{ key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 4 ] '
                'input_data_file: "short" } }'
            )
        ),
        files={"1/model.py": MODEL_PY, "warmup/short": "abc"},
    ),
    Case(
        "warmup_execute_raises",
        py(
            warmup(
                '{ key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 4 ] '
                "zero_data: true } }"
            )
        ),
        files={"1/model.py": RAISING_PY},
    ),
    Case(
        "warmup_extra_input",
        py(
            warmup(
                '{ key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 4 ] '
                'zero_data: true } }, { key: "EXTRA" value { data_type: '
                "TYPE_FP32 dims: [ 1 ] zero_data: true } }"
            )
        ),
    ),
]

OPTIMIZATION_AND_MISC = [
    Case(
        "warmup_sequence_control",
        seq(START_OK, "direct { }")
        + warmup(
            '{ key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 4 ] '
            'zero_data: true } }, { key: "START" value { data_type: TYPE_INT32 '
            "dims: [ 1 ] zero_data: true } }"
        ),
    ),
    Case(
        "warmup_sequence_string_ids",
        seq(control("C", "CONTROL_SEQUENCE_CORRID", "", "TYPE_STRING"), "oldest { }")
        + warmup(
            '{ key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 4 ] '
            "zero_data: true } }",
            "count: 2",
        ),
    ),
    Case(
        "warmup_string",
        py(
            warmup(
                '{ key: "S" value { data_type: TYPE_STRING dims: [ 2 ] '
                "random_data: true } }"
            ),
            io=tensors('{ name: "S", data_type: TYPE_STRING, dims: [ 2 ] }'),
        ),
    ),
    Case(
        "vp_latest_two_of_three",
        py("version_policy { latest { num_versions: 2 } }"),
        files={f"{v}/model.py": MODEL_PY for v in (1, 2, 3)},
    ),
    Case(
        "param_env_path_missing",
        py(
            'parameters { key: "EXECUTION_ENV_PATH" value { string_value: '
            '"/nonexistent/env.tar.gz" } }\n'
        ),
    ),
    Case(
        "ig_secondary_devices",
        py(
            "instance_group [ { kind: KIND_CPU, secondary_devices [ { kind: "
            "KIND_NVDLA, device_id: 0 } ] } ]\n"
        ),
    ),
    Case(
        "db_priority_unbatched",
        py("dynamic_batching { priority_levels: 2 default_priority_level: 1 }\n"),
    ),
    Case("sb_oldest_unbatched", py("sequence_batching { oldest { } }\n")),
    Case(
        "sb_decoupled",
        seq(START_OK) + "model_transaction_policy { decoupled: true }\n",
    ),
    Case(
        "output_shape_tensor",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ 1 ] }',
                '{ name: "O", data_type: TYPE_INT32, dims: [ 1 ], '
                "is_shape_tensor: true }",
            )
        ),
    ),
    Case(
        "batch_output_ok",
        py(
            "max_batch_size: 4\n"
            "batch_output [ { kind: BATCH_SCATTER_WITH_INPUT_SHAPE, "
            'target_name: [ "OUTPUT0" ], source_input: [ "INPUT0" ] } ]\n'
        ),
    ),
    Case("initialize_raises", py(), files={"1/model.py": INIT_RAISES_PY}),
    Case("opt_priority", py("optimization { priority: PRIORITY_MAX }\n")),
    Case("opt_cuda_graphs", py("optimization { cuda { graphs: true } }\n")),
    Case(
        "opt_pinned_off", py("optimization { input_pinned_memory { enable: false } }\n")
    ),
    Case(
        "opt_accelerators",
        py(
            "optimization { execution_accelerators { cpu_execution_accelerator "
            '[ { name: "openvino" } ] } }\n'
        ),
    ),
    Case("opt_gather", py("optimization { gather_kernel_buffer_threshold: 2 }\n")),
    Case(
        "parameters",
        py(
            'parameters { key: "foo" value { string_value: "bar" } }\n'
            'parameters { key: "empty" value { } }\n'
        ),
    ),
    Case("cc_model_filenames", py('cc_model_filenames { key: "x" value: "y" }\n')),
    Case("metric_tags", py('metric_tags { key: "team" value: "a" }\n')),
    Case(
        "repo_agent_unknown",
        py('model_repository_agents { agents [ { name: "nosuch" } ] }\n'),
    ),
    Case(
        "model_metrics_no_identifier",
        py(
            "model_metrics { metric_control [ { histogram_options { "
            "buckets: [ 1 ] } } ] }\n"
        ),
    ),
    Case(
        "ensemble_scheduling_python",
        py(
            'ensemble_scheduling { step [ { model_name: "ok_minimal" '
            "model_version: -1 } ] }\n"
        ),
    ),
]

CASES_PART2 = (
    SEQUENCES + TRANSACTION_AND_CACHE + VERSIONS + WARMUP + OPTIMIZATION_AND_MISC
)
