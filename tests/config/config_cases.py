"""The models of the config differential test, part 1: the file itself, names,
backend/platform, tensors, batching and instance groups (part 2 in
config_cases_more.py). Each is what a user writes by mistake or leaves out."""

from __future__ import annotations

from config_diff import BASE_IO, MODEL_PY, Case

PY = 'backend: "python"\n'


def py(body: str = "", io: str = BASE_IO) -> str:
    """A python-backend config: ``body`` plus the default tensors (or ``io``)."""
    return PY + io + body


def tensors(inputs: str, outputs: str = "") -> str:
    out = outputs or '{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] }'
    return f"input [ {inputs} ]\noutput [ {out} ]\n"


AUTO_COMPLETE_PY = (
    MODEL_PY
    + """
    @staticmethod
    def auto_complete_config(config):
        config.add_input({"name": "IN", "data_type": "TYPE_INT32", "dims": [2]})
        config.add_output({"name": "OUT", "data_type": "TYPE_INT32", "dims": [2]})
        config.set_max_batch_size(8)
        config.set_dynamic_batching()
        return config
"""
)

FILE_AND_NAMES = [
    Case("ok_minimal", py()),
    Case("ok_named", 'name: "{name}"\n' + py()),
    Case("no_config", None),
    Case("empty_config", ""),
    Case("only_backend", PY),
    Case("name_mismatch", 'name: "other"\n' + py()),
    Case("name_empty_string", 'name: ""\n' + py()),
    Case("unknown_field", py("foo: 1\n")),
    Case("unknown_nested_field", py("dynamic_batching { bogus: 2 }\n")),
    Case("syntax_error", PY + 'input [ { name: "INPUT0" '),
    Case("no_version_dir", py(), files={}),
    Case("version_dir_no_model_py", py(), files={"1/other.py": MODEL_PY}),
    Case("version_zero", py(), files={"0/model.py": MODEL_PY}),
    Case("version_nonnumeric", py(), files={"abc/model.py": MODEL_PY}),
    Case("model_py_syntax_error", py(), files={"1/model.py": "def (:\n"}),
    Case("model_py_no_class", py(), files={"1/model.py": "x = 1\n"}),
    Case(
        "default_model_filename",
        py('default_model_filename: "other.py"\n'),
        files={"1/other.py": MODEL_PY},
    ),
    Case("default_model_filename_missing", py('default_model_filename: "nope.py"\n')),
    Case("auto_complete_fn", None, files={"1/model.py": AUTO_COMPLETE_PY}),
    Case(
        "auto_complete_conflict",
        PY
        + tensors('{ name: "IN", data_type: TYPE_FP32, dims: [ 2 ] }')
        + "max_batch_size: 4\n",
        files={"1/model.py": AUTO_COMPLETE_PY},
    ),
]

BACKEND_PLATFORM = [
    Case("platform_python_only", 'platform: "python"\n' + BASE_IO),
    Case("backend_platform_onnx", py('platform: "onnxruntime_onnx"\n')),
    Case("backend_platform_trt", py('platform: "tensorrt_plan"\n')),
    Case("backend_platform_ensemble", py('platform: "ensemble"\n')),
    Case("backend_platform_custom", py('platform: "my_platform"\n')),
    Case("backend_unknown", 'backend: "nosuch"\n' + BASE_IO),
    Case("backend_empty_with_py", BASE_IO),
    Case("backend_uppercase", 'backend: "Python"\n' + BASE_IO),
]

TENSORS = [
    Case(
        "bad_datatype", py(io=tensors('{ name: "I", data_type: TYPE_XX, dims: [1] }'))
    ),
    Case("datatype_invalid", py(io=tensors('{ name: "I", data_type: TYPE_INVALID }'))),
    Case("no_datatype", py(io=tensors('{ name: "I", dims: [ 1 ] }'))),
    Case("no_dims", py(io=tensors('{ name: "I", data_type: TYPE_FP32 }'))),
    Case("empty_dims", py(io=tensors('{ name: "I", data_type: TYPE_FP32, dims: [] }'))),
    Case("dims_zero", py(io=tensors('{ name: "I", data_type: TYPE_FP32, dims: [0] }'))),
    Case(
        "dims_minus2", py(io=tensors('{ name: "I", data_type: TYPE_FP32, dims: [-2] }'))
    ),
    Case(
        "output_dims_zero",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [1] }',
                '{ name: "O", data_type: TYPE_FP32, dims: [ 2, 0 ] }',
            )
        ),
    ),
    Case("no_input_name", py(io=tensors("{ data_type: TYPE_FP32, dims: [ 1 ] }"))),
    Case(
        "dims_variable",
        py(io=tensors('{ name: "I", data_type: TYPE_FP32, dims: [ -1, -1 ] }')),
    ),
    Case(
        "string_bool_bf16",
        py(
            io=tensors(
                '{ name: "S", data_type: TYPE_STRING, dims: [ 1 ] },'
                '{ name: "B", data_type: TYPE_BOOL, dims: [ 1 ] },'
                '{ name: "H", data_type: TYPE_BF16, dims: [ 1 ] }'
            )
        ),
    ),
    Case(
        "dup_input",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [1] },'
                '{ name: "I", data_type: TYPE_FP32, dims: [1] }'
            )
        ),
    ),
    Case(
        "dup_output",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [1] }',
                '{ name: "O", data_type: TYPE_FP32, dims: [1] },'
                '{ name: "O", data_type: TYPE_INT32, dims: [2] }',
            )
        ),
    ),
    Case(
        "input_output_same_name",
        py(
            io=tensors(
                '{ name: "X", data_type: TYPE_FP32, dims: [1] }',
                '{ name: "X", data_type: TYPE_FP32, dims: [1] }',
            )
        ),
    ),
    Case("no_outputs", PY + 'input [ { name: "I", data_type: TYPE_FP32, dims: [1] } ]'),
    Case("no_tensors", PY + "max_batch_size: 2\n"),
    Case(
        "reshape_mismatch",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ 4 ], '
                "reshape: { shape: [ 5 ] } }"
            )
        ),
    ),
    Case(
        "reshape_ok",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ 2, 2 ], '
                "reshape: { shape: [ 4 ] } }"
            )
        ),
    ),
    Case(
        "reshape_empty_unbatched",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ 1 ], '
                "reshape: { shape: [ ] } }"
            )
        ),
    ),
    Case(
        "reshape_empty_batched",
        py(
            "max_batch_size: 4\n",
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ 1 ], '
                "reshape: { shape: [ ] } }"
            ),
        ),
    ),
    Case(
        "reshape_variable_mismatch",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ -1, 2 ], '
                "reshape: { shape: [ 2, -1 ] } }"
            )
        ),
    ),
    Case(
        "reshape_zero",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ 1 ], '
                "reshape: { shape: [ 0 ] } }"
            )
        ),
    ),
    Case(
        "input_optional",
        py(
            io=tensors('{ name: "I", data_type: TYPE_FP32, dims: [1], optional: true }')
        ),
    ),
    Case(
        "ragged_batched",
        py(
            "max_batch_size: 4\n",
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ -1 ], '
                "allow_ragged_batch: true }"
            ),
        ),
    ),
    Case(
        "ragged_unbatched",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ -1 ], '
                "allow_ragged_batch: true }"
            )
        ),
    ),
    Case(
        "is_shape_tensor",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_INT32, dims: [ 1 ], '
                "is_shape_tensor: true }"
            )
        ),
    ),
    Case(
        "non_linear_format",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ 3, 2, 2 ], '
                "is_non_linear_format_io: true }"
            )
        ),
    ),
    Case(
        "format_nhwc_2dims",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ 2, 2 ], '
                "format: FORMAT_NHWC }"
            )
        ),
    ),
    Case(
        "format_nchw_ok",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [ 3, 2, 2 ], '
                "format: FORMAT_NCHW }"
            )
        ),
    ),
    Case(
        "label_file_missing",
        py(
            io=tensors(
                '{ name: "I", data_type: TYPE_FP32, dims: [1] }',
                '{ name: "O", data_type: TYPE_FP32, dims: [1], '
                'label_filename: "labels.txt" }',
            )
        ),
    ),
    Case(
        "batch_input",
        py(
            "max_batch_size: 4\n"
            'batch_input [ { kind: BATCH_ELEMENT_COUNT, target_name: [ "B" ], '
            'data_type: TYPE_FP32, source_input: [ "INPUT0" ] } ]\n'
        ),
    ),
    Case(
        "batch_input_bad_source",
        py(
            "max_batch_size: 4\n"
            'batch_input [ { kind: BATCH_ELEMENT_COUNT, target_name: [ "B" ], '
            'data_type: TYPE_FP32, source_input: [ "NOPE" ] } ]\n'
        ),
    ),
    Case(
        "batch_output_bad_target",
        py(
            "max_batch_size: 4\n"
            "batch_output [ { kind: BATCH_SCATTER_WITH_INPUT_SHAPE, "
            'target_name: [ "NOPE" ], source_input: [ "INPUT0" ] } ]\n'
        ),
    ),
]

BATCHING = [
    Case("mbs_negative", py("max_batch_size: -1\n")),
    Case("mbs_8", py("max_batch_size: 8\n")),
    Case("mbs_8_db", py("max_batch_size: 8\ndynamic_batching { }\n")),
    Case("mbs_0_db", py("dynamic_batching { }\n")),
    Case(
        "db_preferred_gt_max",
        py("max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 8 ] }\n"),
    ),
    Case(
        "db_preferred_zero",
        py("max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 0 ] }\n"),
    ),
    Case(
        "db_preferred_unbatched",
        py("dynamic_batching { preferred_batch_size: [ 2 ] }\n"),
    ),
    Case(
        "db_fields",
        py(
            "max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 2, 4 ] "
            "max_queue_delay_microseconds: 100 preserve_ordering: true "
            "default_queue_policy { timeout_action: REJECT "
            "default_timeout_microseconds: 5 allow_timeout_override: true "
            "max_queue_size: 3 } }\n"
        ),
    ),
    Case(
        "db_priority_default_zero",
        py("max_batch_size: 4\ndynamic_batching { priority_levels: 2 }\n"),
    ),
    Case(
        "db_priority_ok",
        py(
            "max_batch_size: 4\ndynamic_batching { priority_levels: 2 "
            "default_priority_level: 1 priority_queue_policy { key: 2 value { "
            "max_queue_size: 1 } } }\n"
        ),
    ),
    Case(
        "db_priority_policy_out_of_range",
        py(
            "max_batch_size: 4\ndynamic_batching { priority_levels: 2 "
            "default_priority_level: 1 priority_queue_policy { key: 3 value { "
            "max_queue_size: 1 } } }\n"
        ),
    ),
    Case(
        "db_preserve_delay",
        py(
            "max_batch_size: 4\ndynamic_batching { preserve_ordering: true "
            "default_queue_policy { timeout_action: DELAY "
            "default_timeout_microseconds: 100 } }\n"
        ),
    ),
    Case(
        "db_preserve_two_levels",
        py(
            "max_batch_size: 4\ndynamic_batching { preserve_ordering: true "
            "priority_levels: 2 default_priority_level: 1 }\n"
        ),
    ),
]

INSTANCE_GROUPS = [
    Case("ig_gpu", py("instance_group [ { kind: KIND_GPU } ]\n")),
    Case("ig_gpu_ids", py("instance_group [ { kind: KIND_GPU, gpus: [ 0 ] } ]\n")),
    Case("ig_count_zero", py("instance_group [ { count: 0 } ]\n")),
    Case("ig_count_negative", py("instance_group [ { count: -1 } ]\n")),
    Case("ig_count_two", py("instance_group [ { count: 2, kind: KIND_CPU } ]\n")),
    Case("ig_model", py("instance_group [ { kind: KIND_MODEL } ]\n")),
    Case("ig_cpu_with_gpus", py("instance_group [ { kind: KIND_CPU, gpus: [0] } ]\n")),
    Case("ig_auto_gpus", py("instance_group [ { kind: KIND_AUTO, gpus: [0] } ]\n")),
    Case(
        "ig_two_groups",
        py('instance_group [ { name: "a" }, { kind: KIND_CPU } ]\n'),
    ),
    Case(
        "ig_same_names",
        py('instance_group [ { name: "a" }, { name: "a" } ]\n'),
    ),
    Case("ig_profile", py('instance_group [ { profile: [ "0" ] } ]\n')),
    Case("ig_passive", py("instance_group [ { passive: true } ]\n")),
    Case("ig_host_policy", py('instance_group [ { host_policy: "nosuch" } ]\n')),
    Case(
        "ig_rate_limiter",
        py(
            'instance_group [ { rate_limiter { resources [ { name: "R", count: 2 } ] '
            "priority: 2 } } ]\n"
        ),
    ),
    Case(
        "ig_rate_limiter_global",
        py(
            'instance_group [ { rate_limiter { resources [ { name: "R", '
            "global: true, count: 0 } ] } } ]\n"
        ),
    ),
]

CASES_PART1 = FILE_AND_NAMES + BACKEND_PLATFORM + TENSORS + BATCHING + INSTANCE_GROUPS
