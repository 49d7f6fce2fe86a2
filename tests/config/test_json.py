"""/config JSON rendering. The expected texts are what the Triton 2.51 reference
server returned for the same config.pbtxt (python backend, no GPU)."""

from __future__ import annotations

import json

from tritonx.config import (
    ModelConfig,
    config_to_json,
    config_to_json_dict,
    finalize_model_config,
    load_model_config,
    parse_config_text,
    poll_model_config,
)
from tritonx.config.normalize import normalize_instance_groups

from .conftest import MakeModel

M1_CONFIG = """
backend: "python"
max_batch_size: 8
input [ { name: "IN0" data_type: TYPE_FP32 dims: [ 4 ] reshape: { shape: [ 2, 2 ] } } ]
output [ { name: "OUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 100 }
instance_group [ { count: 2 kind: KIND_CPU } ]
"""
M1_JSON = (
    '{"name":"m1","platform":"","backend":"python","runtime":"","version_po'
    'licy":{"latest":{"num_versions":1}},"max_batch_size":8,"input":[{"name'
    '":"IN0","data_type":"TYPE_FP32","format":"FORMAT_NONE","dims":[4],"res'
    'hape":{"shape":[2,2]},"is_shape_tensor":false,"allow_ragged_batch":fal'
    'se,"optional":false,"is_non_linear_format_io":false}],"output":[{"name'
    '":"OUT0","data_type":"TYPE_FP32","dims":[4],"label_filename":"","is_sh'
    'ape_tensor":false,"is_non_linear_format_io":false}],"batch_input":[],"'
    'batch_output":[],"optimization":{"priority":"PRIORITY_DEFAULT","input_'
    'pinned_memory":{"enable":true},"output_pinned_memory":{"enable":true},'
    '"gather_kernel_buffer_threshold":0,"eager_batching":false},"dynamic_ba'
    'tching":{"preferred_batch_size":[4],"max_queue_delay_microseconds":100'
    ',"preserve_ordering":false,"priority_levels":0,"default_priority_level'
    '":0,"priority_queue_policy":{}},"instance_group":[{"name":"m1_0","kind'
    '":"KIND_CPU","count":2,"gpus":[],"secondary_devices":[],"profile":[],"'
    'passive":false,"host_policy":""}],"default_model_filename":"model.py",'
    '"cc_model_filenames":{},"metric_tags":{},"parameters":{},"model_warmup'
    '":[]}'
)

M3_CONFIG = """
backend: "python"
max_batch_size: 4
input [ { name: "IN0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { priority_levels: 3 default_priority_level: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000
                         max_queue_size: 5 }
  priority_queue_policy { key: 1 value: { max_queue_size: 3 } } }
instance_group [ { name: "grp" }, {count: 3} ]
"""
M3_JSON = (
    '{"name":"m3","platform":"","backend":"python","runtime":"","version_po'
    'licy":{"latest":{"num_versions":1}},"max_batch_size":4,"input":[{"name'
    '":"IN0","data_type":"TYPE_FP32","format":"FORMAT_NONE","dims":[1],"is_'
    'shape_tensor":false,"allow_ragged_batch":false,"optional":false,"is_no'
    'n_linear_format_io":false}],"output":[{"name":"OUT0","data_type":"TYPE'
    '_FP32","dims":[1],"label_filename":"","is_shape_tensor":false,"is_non_'
    'linear_format_io":false}],"batch_input":[],"batch_output":[],"optimiza'
    'tion":{"priority":"PRIORITY_DEFAULT","input_pinned_memory":{"enable":t'
    'rue},"output_pinned_memory":{"enable":true},"gather_kernel_buffer_thre'
    'shold":0,"eager_batching":false},"dynamic_batching":{"preferred_batch_'
    'size":[4],"max_queue_delay_microseconds":0,"preserve_ordering":false,"'
    'priority_levels":3,"default_priority_level":2,"default_queue_policy":{'
    '"timeout_action":"DELAY","default_timeout_microseconds":1000,"allow_ti'
    'meout_override":false,"max_queue_size":5},"priority_queue_policy":{"1"'
    ':{"timeout_action":"REJECT","default_timeout_microseconds":0,"allow_ti'
    'meout_override":false,"max_queue_size":3}}},"instance_group":[{"name":'
    '"grp","kind":"KIND_CPU","count":1,"gpus":[],"secondary_devices":[],"pr'
    'ofile":[],"passive":false,"host_policy":""},{"name":"m3_1","kind":"KIN'
    'D_CPU","count":3,"gpus":[],"secondary_devices":[],"profile":[],"passiv'
    'e":false,"host_policy":""}],"default_model_filename":"model.py","cc_mo'
    'del_filenames":{},"metric_tags":{},"parameters":{},"model_warmup":[]}'
)

# Sequence batching cannot be loaded by tritonx, but its rendering (including the
# 64-bit fields Triton leaves as strings) must still match.
Q_CONFIG = """
backend: "python"
max_batch_size: 4
input [ { name: "IN0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
sequence_batching { oldest { max_candidate_sequences: 2 max_queue_delay_microseconds: 5 }
  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START
                                              fp32_false_true: [ 0, 0.1 ] } ] } ]
  state [ { input_name: "S_IN" output_name: "S_OUT" data_type: TYPE_INT32 dims: [ 2 ]
            initial_state [ { data_type: TYPE_INT32 dims: [ 2 ] zero_data: true
                              name: "init" } ] } ] }
instance_group [ { kind: KIND_CPU secondary_devices [ { kind: KIND_NVDLA device_id: 3 } ] } ]
parameters { key: "p" value: { string_value: "x" } }
metric_tags { key: "a" value: "b" }
"""
Q_JSON = (
    '{"name":"q_seq","platform":"","backend":"python","runtime":"","version'
    '_policy":{"latest":{"num_versions":1}},"max_batch_size":4,"input":[{"n'
    'ame":"IN0","data_type":"TYPE_FP32","format":"FORMAT_NONE","dims":[4],"'
    'is_shape_tensor":false,"allow_ragged_batch":false,"optional":false,"is'
    '_non_linear_format_io":false}],"output":[{"name":"OUT0","data_type":"T'
    'YPE_FP32","dims":[4],"label_filename":"","is_shape_tensor":false,"is_n'
    'on_linear_format_io":false}],"batch_input":[],"batch_output":[],"optim'
    'ization":{"priority":"PRIORITY_DEFAULT","input_pinned_memory":{"enable'
    '":true},"output_pinned_memory":{"enable":true},"gather_kernel_buffer_t'
    'hreshold":0,"eager_batching":false},"sequence_batching":{"oldest":{"ma'
    'x_candidate_sequences":2,"preferred_batch_size":[4],"max_queue_delay_m'
    'icroseconds":5,"preserve_ordering":false},"max_sequence_idle_microseco'
    'nds":1000000,"control_input":[{"name":"START","control":[{"kind":"CONT'
    'ROL_SEQUENCE_START","int32_false_true":[],"fp32_false_true":[0,0.1],"b'
    'ool_false_true":[],"data_type":"TYPE_INVALID"}]}],"state":[{"input_nam'
    'e":"S_IN","output_name":"S_OUT","data_type":"TYPE_INT32","dims":[2],"i'
    'nitial_state":[{"data_type":"TYPE_INT32","dims":["2"],"name":"init","z'
    'ero_data":true}],"use_same_buffer_for_input_output":false,"use_growabl'
    'e_memory":false}],"iterative_sequence":false},"instance_group":[{"name'
    '":"q_seq_0","kind":"KIND_CPU","count":1,"gpus":[],"secondary_devices":'
    '[{"kind":"KIND_NVDLA","device_id":"3"}],"profile":[],"passive":false,"'
    'host_policy":""}],"default_model_filename":"model.py","cc_model_filena'
    'mes":{},"metric_tags":{"a":"b"},"parameters":{"p":{"string_value":"x"}'
    '},"model_warmup":[]}'
)


def test_m1_text_identical(make_model: MakeModel) -> None:
    config = load_model_config(make_model("m1", M1_CONFIG))
    assert config_to_json(config) == M1_JSON


def test_m3_dict_identical(make_model: MakeModel) -> None:
    config = load_model_config(make_model("m3", M3_CONFIG))
    assert config_to_json_dict(config) == json.loads(M3_JSON)
    assert config_to_json(config) == M3_JSON


def test_sequence_rendering_identical(make_model: MakeModel) -> None:
    model_dir = make_model("q_seq", Q_CONFIG)
    config = parse_config_text(Q_CONFIG, "q")
    poll_model_config(config, "q_seq", model_dir)
    normalize_instance_groups(config)
    assert config_to_json(config) == Q_JSON


def test_shape_of_rendering(make_model: MakeModel) -> None:
    doc = json.loads(M1_JSON)
    # The fields perf_analyzer / tritonclient read, with their JSON types.
    assert isinstance(doc["max_batch_size"], int)
    assert doc["input"][0]["dims"] == [4]
    assert doc["instance_group"][0]["kind"] == "KIND_CPU"
    assert doc["batch_input"] == []
    assert "model_transaction_policy" not in doc


def test_empty_config_renders_empty() -> None:
    assert config_to_json_dict(ModelConfig()) == {}
    assert config_to_json(ModelConfig()) == ""


def test_transaction_policy_and_specific_versions(make_model: MakeModel) -> None:
    text = (
        'backend: "python"\n'
        "version_policy { specific { versions: [1, 3] } }\n"
        "model_transaction_policy { decoupled: true }\n"
    )
    config = parse_config_text(text, "x")
    poll_model_config(config, "m")
    finalize_model_config(config)
    doc = config_to_json_dict(config)
    assert doc["version_policy"] == {"specific": {"versions": [1, 3]}}
    assert doc["model_transaction_policy"] == {"decoupled": True}
