"""Model config -> onnxruntime SessionOptions and execution providers.

Follows Triton's onnxruntime backend: ``parameters`` keys (intra_op_thread_count,
inter_op_thread_count, execution_mode, enable_mem_arena, enable_mem_pattern,
session.*/memory.* entries, CUDA EP tunables), ``optimization.graph.level``
(-1 basic, 1 extended, 2 none, anything else all) and
``optimization.execution_accelerators`` (gpu: tensorrt, cuda; cpu: openvino) and
``model_operations.op_library_filename`` (custom-operator libraries).
Thread counts given with --backend-config=onnxruntime,... are the defaults.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import onnxruntime as ort

from tritonx.backends.base import InstanceContext, ModelConfig
from tritonx.config.settings import int_setting
from tritonx.errors import InternalError, InvalidArgumentError

log = logging.getLogger("tritonx.backends.onnxruntime")

_GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}

# Deprecated top-level parameters Triton still forwards to the CUDA EP.
_CUDA_PARAMS = (
    "cudnn_conv_algo_search",
    "gpu_mem_limit",
    "arena_extend_strategy",
    "do_copy_in_default_stream",
)
_TRT_OPTION_NAMES = {
    "max_workspace_size_bytes": "trt_max_workspace_size",
    "int8_calibration_table_name": "trt_int8_calibration_table_name",
    "int8_use_native_calibration_table": "trt_int8_use_native_calibration_table",
}


@dataclass
class OrtSettings:
    """What every instance's InferenceSession is built from."""

    options: ort.SessionOptions
    run_options: ort.RunOptions
    gpu_accelerators: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    cpu_accelerators: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    cuda_options: dict[str, str] = field(default_factory=dict)
    # Providers already reported missing for this model (one log line each).
    missing_reported: set[str] = field(default_factory=set)


def _parameters(config: ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "on", "yes")


def build_settings(
    config: ModelConfig, backend_config: Mapping[str, str]
) -> OrtSettings:
    params = _parameters(config)
    options = ort.SessionOptions()
    run_options = ort.RunOptions()
    for key in ("intra_op_thread_count", "inter_op_thread_count"):
        value = int_setting(params, key)
        if value is None:
            value = int_setting(backend_config, key)
        if value is not None and value > 0:
            setattr(options, key.replace("_thread_count", "_num_threads"), value)
    if int_setting(params, "execution_mode") == 1:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if "enable_mem_arena" in params:
        options.enable_cpu_mem_arena = _flag(params["enable_mem_arena"])
    if "enable_mem_pattern" in params:
        options.enable_mem_pattern = _flag(params["enable_mem_pattern"])
    for key, entry in params.items():
        if key.startswith("session."):
            options.add_session_config_entry(key, entry)
        elif key.startswith("memory."):
            run_options.add_run_config_entry(key, entry)
    if config.HasField("optimization") and config.optimization.HasField("graph"):
        options.graph_optimization_level = _GRAPH_LEVELS.get(
            config.optimization.graph.level,
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        )
    # Libraries of custom operators the graph uses (Triton's model_operations,
    # e.g. onnxruntime-extensions' get_library_path()), registered in order.
    for library in config.model_operations.op_library_filename:
        try:
            options.register_custom_ops_library(library)
        except Exception as exc:
            raise ort_error(exc) from exc
    settings = OrtSettings(options=options, run_options=run_options)
    settings.cuda_options = {k: params[k] for k in _CUDA_PARAMS if k in params}
    accel = config.optimization.execution_accelerators
    for acc in accel.gpu_execution_accelerator:
        if acc.name not in ("tensorrt", "cuda"):
            raise InvalidArgumentError(
                f"unknown Execution Accelerator '{acc.name}' is requested"
            )
        settings.gpu_accelerators.append((acc.name, dict(acc.parameters)))
    for acc in accel.cpu_execution_accelerator:
        if acc.name != "openvino":
            raise InvalidArgumentError(
                f"unknown Execution Accelerator '{acc.name}' is requested"
            )
        settings.cpu_accelerators.append((acc.name, dict(acc.parameters)))
    return settings


_ORT_STATUS = re.compile(r"\[ONNXRuntimeError\] : (\d+) : \w+ : (.*)", re.S)


def ort_error(exc: BaseException) -> InternalError:
    """An onnxruntime failure in the words of Triton's onnxruntime backend:
    INTERNAL "onnx runtime error <status code>: <onnxruntime's message>"."""
    match = _ORT_STATUS.match(str(exc))
    code, message = match.groups() if match else ("1", str(exc))
    return InternalError(f"onnx runtime error {code}: {message}")


def _trt_options(params: Mapping[str, str], device_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {"device_id": device_id}
    for key, value in params.items():
        if key == "precision_mode":
            if value == "FP16":
                out["trt_fp16_enable"] = True
            elif value == "INT8":
                out["trt_int8_enable"] = True
        else:
            out[_TRT_OPTION_NAMES.get(key, key)] = value
    return out


def _missing(settings: OrtSettings, provider: str, what: str) -> None:
    if provider not in settings.missing_reported:
        settings.missing_reported.add(provider)
        log.warning(
            "onnxruntime has no %s (install onnxruntime-gpu): %s", provider, what
        )


def providers_for(
    settings: OrtSettings, ictx: InstanceContext
) -> list[tuple[str, dict[str, Any]]]:
    """Execution providers for one instance, in priority order (CPU always last).

    A GPU instance gets the TensorRT provider when its config asks for it, then
    the CUDA provider on the instance's device and the core's stream for it, as
    Triton's onnxruntime backend does. A provider this onnxruntime lacks is
    skipped with one log line per model (the instance then runs on the CPU)."""
    available = set(ort.get_available_providers())
    chosen: list[tuple[str, dict[str, Any]]] = []
    if ictx.kind == "GPU":
        for name, params in settings.gpu_accelerators:
            if name != "tensorrt":
                continue
            if "TensorrtExecutionProvider" in available:
                chosen.append(
                    ("TensorrtExecutionProvider", _trt_options(params, ictx.device_id))
                )
            else:
                _missing(settings, "TensorrtExecutionProvider", "not using TensorRT")
        if "CUDAExecutionProvider" in available:
            cuda: dict[str, Any] = {
                "device_id": ictx.device_id,
                **settings.cuda_options,
            }
            for name, params in settings.gpu_accelerators:
                if name == "cuda":
                    cuda.update(params)
            if ictx.cuda_stream:
                # Run on the stream the core gave this instance.
                cuda["has_user_compute_stream"] = "1"
                cuda["user_compute_stream"] = str(ictx.cuda_stream)
            chosen.append(("CUDAExecutionProvider", cuda))
        else:
            _missing(
                settings,
                "CUDAExecutionProvider",
                f"GPU instance '{ictx.name}' runs on the CPU",
            )
    for name, params in settings.cpu_accelerators:
        if name == "openvino" and "OpenVINOExecutionProvider" in available:
            chosen.append(("OpenVINOExecutionProvider", dict(params)))
    chosen.append(("CPUExecutionProvider", {}))
    return chosen
