"""Model config ``parameters`` -> pytorch backend settings (Triton's keys).

Booleans accept true/false, yes/no, 1/0, on/off as Triton's ParseBoolValue does.
Switches torch keeps process-wide (JIT executor/profiling, tensor-expression fuser,
cuDNN, inter-op threads) are applied at load and only when the config names them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import torch

from tritonx.backends.base import ModelConfig
from tritonx.config.settings import int_setting
from tritonx.errors import InvalidArgumentError

log = logging.getLogger("tritonx.backends.pytorch")

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
_interop_lock = threading.Lock()
_interop_set = False


def _bool_param(params: Mapping[str, str], key: str) -> bool | None:
    if key not in params:
        return None
    value = params[key].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgumentError(
        f"failed to convert string '{params[key]}' to boolean value for '{key}'"
    )


class TorchSettings:
    """Triton's pytorch ``parameters`` for one model."""

    def __init__(self, config: ModelConfig) -> None:
        params = {k: v.string_value for k, v in config.parameters.items()}
        # Triton's current default is inference mode on.
        self.inference_mode = _bool_param(params, "INFERENCE_MODE") is not False
        self.optimized = not _bool_param(params, "DISABLE_OPTIMIZED_EXECUTION")
        self.cache_cleaning = bool(_bool_param(params, "ENABLE_CACHE_CLEANING"))
        self.weight_sharing = bool(_bool_param(params, "ENABLE_WEIGHT_SHARING"))
        self.disable_cudnn = bool(_bool_param(params, "DISABLE_CUDNN"))
        self.jit_profiling = _bool_param(params, "ENABLE_JIT_PROFILING")
        self.jit_executor = _bool_param(params, "ENABLE_JIT_EXECUTOR")
        self.tensor_fuser = _bool_param(params, "ENABLE_TENSOR_FUSER")
        if _bool_param(params, "ENABLE_NVFUSER"):
            log.warning("ENABLE_NVFUSER is ignored: this torch has no NvFuser")
        self.intra_op_threads = int_setting(params, "INTRA_OP_THREAD_COUNT")
        self.inter_op_threads = int_setting(params, "INTER_OP_THREAD_COUNT")
        # tritonx: batches a GPU instance keeps in flight on its stream (2: the
        # next one's copies and kernels queue while the host finishes this one).
        depth = int_setting(params, "PIPELINE_DEPTH")
        if depth is not None and not 1 <= depth <= 8:
            raise InvalidArgumentError(
                f"PIPELINE_DEPTH must be between 1 and 8, got {depth}"
            )
        self.pipeline_depth = depth or 2

    def apply_process_wide(self) -> None:
        """JIT switches are process-wide in torch; only explicit ones change."""
        global _interop_set
        if self.jit_profiling is not None:
            torch._C._jit_set_profiling_mode(self.jit_profiling)
        if self.jit_executor is not None:
            torch._C._jit_set_profiling_executor(self.jit_executor)
        if self.tensor_fuser is not None:
            torch._C._jit_set_texpr_fuser_enabled(self.tensor_fuser)
        if self.disable_cudnn:
            torch.backends.cudnn.enabled = False
        if self.inter_op_threads and self.inter_op_threads > 0:
            with _interop_lock:
                if not _interop_set:
                    try:
                        torch.set_num_interop_threads(self.inter_op_threads)
                    except RuntimeError as exc:  # once per process, before use
                        log.warning("INTER_OP_THREAD_COUNT not applied: %s", exc)
                    _interop_set = True
