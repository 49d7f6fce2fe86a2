"""Model configuration: parsing, Triton's autofill/normalization/validation, JSON
rendering and conversion to the core's types."""

from __future__ import annotations

from tritonx.config._pb import ModelConfig
from tritonx.config.autocomplete import (
    apply_auto_complete_update,
    apply_python_auto_complete,
)
from tritonx.config.datatypes import config_datatype, datatype_name, wire_datatype
from tritonx.config.json_render import config_to_json, config_to_json_dict
from tritonx.config.loader import (
    BackendConfig,
    ConfigPollError,
    default_max_batch_size,
    finalize_model_config,
    load_model_config,
    model_file_path,
    normalize_and_validate,
    poll_model_config,
)
from tritonx.config.onnx_complete import check_onnx_consistency, complete_from_onnx
from tritonx.config.parse import config_from_json, parse_config_text, read_config_file
from tritonx.config.to_core import (
    model_spec_from_config,
    rate_limits_from_config,
    scheduler_config_from_config,
)

__all__ = [
    "BackendConfig",
    "ConfigPollError",
    "ModelConfig",
    "apply_auto_complete_update",
    "apply_python_auto_complete",
    "check_onnx_consistency",
    "complete_from_onnx",
    "config_datatype",
    "config_from_json",
    "config_to_json",
    "config_to_json_dict",
    "datatype_name",
    "default_max_batch_size",
    "finalize_model_config",
    "load_model_config",
    "model_file_path",
    "model_spec_from_config",
    "normalize_and_validate",
    "parse_config_text",
    "poll_model_config",
    "rate_limits_from_config",
    "read_config_file",
    "scheduler_config_from_config",
    "wire_datatype",
]
