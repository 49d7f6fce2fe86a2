"""Model config ``parameters`` -> pytorch backend settings (Triton's keys), and
``model_operations.op_library_filename`` (custom-operator libraries).

Booleans accept true/false, yes/no, 1/0, on/off as Triton's ParseBoolValue does.
Switches torch keeps process-wide (JIT executor/profiling, tensor-expression fuser,
cuDNN, inter-op threads) are applied at load and only when the config names them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Mapping

import torch

from tritonx.backends.base import ModelConfig
from tritonx.config.settings import int_setting
from tritonx.errors import InternalError, InvalidArgumentError

log = logging.getLogger("tritonx.backends.pytorch")

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
_interop_lock = threading.Lock()
_interop_set = False
# Op libraries this process has loaded (by what dlopen was given): a library's
# static initializers register its operators once, and torch cannot unload them.
_libraries_lock = threading.Lock()
_libraries_loaded: set[str] = set()


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


def load_op_libraries(config: ModelConfig) -> None:
    """Load the config's ``model_operations.op_library_filename`` libraries, in
    order, so that a model calling their operators (``torch.ops.<ns>.<op>``) can
    be deserialized; call before loading the model file.

    Triton's pytorch backend reads no ``model_operations`` (its documented route is
    LD_PRELOAD); this follows its tensorflow backend, which loads the libraries when
    the model is created (before auto-complete and the model file) and fails the
    load with INTERNAL and the loader's own message. Paths mean what they mean to
    dlopen, as there: absolute, relative to the server's working directory, or (a
    bare file name) found on the library search path (LD_LIBRARY_PATH, ldconfig).
    Libraries stay loaded, and their operators usable by every model, until the
    server exits.
    """
    for library in config.model_operations.op_library_filename:
        # torch.ops.load_library resolves its argument to a real path, which would
        # turn a bare file name into one in the working directory: such a name goes
        # to dlopen as it is, the way Triton's backends hand it over.
        bare = os.sep not in library
        key = library if bare else os.path.realpath(library)
        with _libraries_lock:
            if key in _libraries_loaded or key in torch.ops.loaded_libraries:
                continue
            try:
                if bare:
                    ctypes.CDLL(library)
                else:
                    torch.ops.load_library(library)
            except OSError as exc:
                # torch wraps dlopen's error ("<path>: cannot open shared object
                # file: ...") in its own "Could not load this library: <path>".
                raise InternalError(str(exc.__cause__ or exc)) from exc
            _libraries_loaded.add(key)
            log.info("Loaded operator library '%s'", library)
