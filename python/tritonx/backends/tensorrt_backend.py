"""The tensorrt backend: serialized TensorRT engines (``model.plan``) on GPU instances.

One engine per device per model version (deserialized on that device, shared by its
instances), one execution context per optimization profile an instance uses
(``instance_group { profile: [...] }``, profile 0 by default), as Triton's tensorrt
backend does. Each instance owns device buffers sized for the largest shapes its
profiles take, bound to its contexts once.

A batch: the core gathers the requests' inputs into its pinned arena (the instance
asks for ``staged_inputs``); the instance picks the profile for the batch's shapes
(``tensorrt_engine.choose_profile``), queues the host->device copies, the engine and
the device->host copies of the wanted outputs into pinned arena buffers, all on the
instance's own stream, and waits once (GIL released) before handing the host arrays
to the core, which slices them per request. Outputs therefore always reach the host;
a BLS caller that wants them on the device gets a host tensor (Triton's backend
could copy device->device there).

Not supported (refused at load with a clear message): shape tensors, non-linear IO
formats, outputs whose shape depends on the data, BYTES tensors (TensorRT has none).
CUDA graphs (``optimization { cuda { graphs: true } }``) are not used.

TensorRT itself is optional (``pip install 'tritonx[tensorrt]'``) and imported only
when a tensorrt model loads.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tritonx import _native
from tritonx.backends import tensorrt_engine as rules
from tritonx.backends.base import (
    GatheredInstance,
    InstanceContext,
    InstanceKeeper,
    ModelConfig,
    ModelContext,
    OutputValue,
)
from tritonx.backends.tensorrt_engine import EngineDescription, EngineTensor
from tritonx.config._pb import mc
from tritonx.dtypes import ENUM_TO_WIRE, NUMPY_DTYPES
from tritonx.errors import (
    InternalError,
    InvalidArgumentError,
    TritonXError,
    UnavailableError,
)

log = logging.getLogger("tritonx.backends.tensorrt")

DEFAULT_MODEL_FILENAME = "model.plan"
_ALLOCATION_STRATEGIES = ("STATIC", "ON_PROFILE_CHANGE")


def _tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise UnavailableError(
            "unable to load the tensorrt backend: the TensorRT Python package is not "
            f"installed (pip install 'tritonx[tensorrt]'): {exc}"
        ) from None
    return tensorrt


def _model_path(ctx: ModelContext) -> Path:
    named = ctx.model_file.name and ctx.model_file != ctx.version_dir
    path = ctx.model_file if named else ctx.version_dir / DEFAULT_MODEL_FILENAME
    if not path.is_file():
        raise UnavailableError(
            f"unable to find '{path}' for model instance '{ctx.name}'"
        )
    return path


def _logger(trt: Any) -> Any:
    """A TensorRT logger that forwards to ours and keeps the last error, which the
    "unable to create TensorRT engine" message quotes."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.last_error = ""

        def log(self, severity: Any, msg: str) -> None:
            levels = trt.ILogger.Severity
            if severity in (levels.INTERNAL_ERROR, levels.ERROR):
                self.last_error = msg
                log.error("%s", msg)
            elif severity == levels.WARNING:
                log.warning("%s", msg)
            else:
                log.debug("%s", msg)

    return Logger()


def describe(trt: Any, engine: Any) -> EngineDescription:
    """What tensorrt_engine's rules need of an engine."""
    profiles = engine.num_optimization_profiles
    formats = getattr(engine, "get_tensor_format", None)  # absent in some releases
    tensors: list[EngineTensor] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        dims = tuple(int(d) for d in engine.get_tensor_shape(name))
        ranges: tuple[rules.ProfileShapes, ...] = ()
        if is_input:
            if -1 in dims:
                ranges = tuple(
                    rules.ProfileShapes(
                        *(
                            tuple(int(d) for d in shape)
                            for shape in engine.get_tensor_profile_shape(name, p)
                        )
                    )
                    for p in range(profiles)
                )
            else:  # a static input: every profile takes exactly its shape
                ranges = (rules.ProfileShapes(dims, dims, dims),) * profiles
        tensors.append(
            EngineTensor(
                name=name,
                is_input=is_input,
                data_type=rules.data_type_of(engine.get_tensor_dtype(name).name),
                dims=dims,
                profiles=ranges,
                shape_tensor=bool(engine.is_shape_inference_io(name)),
                linear=formats is None or formats(name) == trt.TensorFormat.LINEAR,
            )
        )
    return EngineDescription(tensors=tuple(tensors), num_profiles=profiles)


def _deserialize(trt: Any, plan: bytes, device: int) -> Any:
    _native.cuda_set_device(device)
    logger = _logger(trt)
    runtime = trt.Runtime(logger)
    if runtime is None:
        raise InternalError(f"unable to create TensorRT runtime: {logger.last_error}")
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise InternalError(f"unable to create TensorRT engine: {logger.last_error}")
    # The runtime must outlive the engine; keep them together.
    return runtime, engine


def _group_of(config: ModelConfig, instance: str) -> Any:
    group_name = instance.rsplit("_", 1)[0]
    return next(g for g in config.instance_group if g.name == group_name)


class TensorRTModel(InstanceKeeper):
    """A loaded model version: the plan, one engine per device, the checks."""

    def __init__(self, ctx: ModelContext) -> None:
        super().__init__()
        rules.require_gpu_instances(ctx.config)
        self.trt = _tensorrt()
        self.ctx = ctx
        self.config = ctx.config
        strategy = "STATIC"
        if "execution_context_allocation_strategy" in ctx.config.parameters:
            strategy = ctx.config.parameters[
                "execution_context_allocation_strategy"
            ].string_value
            if strategy not in _ALLOCATION_STRATEGIES:
                raise InvalidArgumentError(
                    "Invalid value for 'execution_context_allocation_strategy': "
                    f"'{strategy}' for model instance '{ctx.name}'. Supported values "
                    "are 'STATIC' and 'ON_PROFILE_CHANGE'."
                )
        self.allocation = getattr(self.trt.ExecutionContextAllocationStrategy, strategy)
        self.plan = _model_path(ctx).read_bytes()
        self._lock = threading.Lock()
        self._engines: dict[int, tuple[Any, Any, EngineDescription]] = {}

    def engine_on(self, device: int) -> tuple[Any, EngineDescription]:
        with self._lock:
            if device not in self._engines:
                runtime, engine = _deserialize(self.trt, self.plan, device)
                self._engines[device] = (runtime, engine, describe(self.trt, engine))
            _, engine, description = self._engines[device]
            return engine, description

    def create_instance(self, ictx: InstanceContext) -> TensorRTInstance:
        return self.keep(TensorRTInstance(self, ictx))

    def unload(self) -> None:
        self.close_instances()  # contexts and buffers before their engines
        self._engines.clear()


class TensorRTInstance(GatheredInstance):
    """Contexts (one per profile) and device buffers on one GPU; called by its core
    worker thread, one batch at a time (pipeline depth 1: the buffers are shared
    by the batches)."""

    pipeline_depth = 1
    # Inputs in the pinned arena, so the host->device copies are asynchronous.
    staged_inputs = True

    def __init__(self, model: TensorRTModel, ictx: InstanceContext) -> None:
        if ictx.kind != "GPU":
            rules.require_gpu_instances(model.config)
        self._name = ictx.name
        self._model_name = model.ctx.name
        self._device = ictx.device_id
        self._stream = ictx.cuda_stream
        self._server = model.ctx.server
        log.info(
            "TRITONBACKEND_ModelInstanceInitialize: %s (GPU device %d)",
            ictx.name,
            ictx.device_id,
        )
        engine, self._engine = model.engine_on(ictx.device_id)
        _native.cuda_set_device(ictx.device_id)  # contexts live on the current device
        group = _group_of(model.config, ictx.name)
        self._profiles = rules.instance_profiles(
            list(group.profile), self._engine.num_profiles, ictx.name
        )
        rules.check_config(model.config, self._engine, self._profiles, ictx.name)
        self._contexts: dict[int, Any] = {}
        for profile in self._profiles:
            context = engine.create_execution_context(model.allocation)
            if context is None:
                raise InternalError(
                    f"unable to create TensorRT context for {ictx.name}"
                )
            if not context.set_optimization_profile_async(profile, self._stream):
                raise InternalError(
                    f"Can not set the specified optimization profile {profile} for "
                    f"{ictx.name}"
                )
            self._contexts[profile] = context
        _native.cuda_stream_sync(self._stream)
        self._dtypes = {
            io.name: (
                ENUM_TO_WIRE[io.data_type],
                NUMPY_DTYPES[ENUM_TO_WIRE[io.data_type]],
            )
            for io in [*model.config.input, *model.config.output]
        }
        self._buffers = self._allocate()

    def _allocate(self) -> dict[str, Any]:
        """One device buffer per I/O tensor, as big as the largest shape any of the
        instance's profiles gives it; bound to every context."""
        sizes: dict[str, int] = {}
        for profile, context in self._contexts.items():
            for tensor in self._engine.inputs:
                shape = tensor.profiles[profile].max
                if -1 in tensor.dims:  # static inputs have their one shape already
                    context.set_input_shape(tensor.name, shape)
                sizes[tensor.name] = max(
                    sizes.get(tensor.name, 0), self._bytes(tensor.name, shape)
                )
            for tensor in self._engine.outputs:
                shape = tuple(int(d) for d in context.get_tensor_shape(tensor.name))
                if any(d < 0 for d in shape):
                    raise InvalidArgumentError(
                        f"unable to load model '{self._model_name}': output "
                        f"'{tensor.name}' "
                        "has a data-dependent shape, which tritonx's tensorrt backend "
                        "does not support"
                    )
                sizes[tensor.name] = max(
                    sizes.get(tensor.name, 0), self._bytes(tensor.name, shape)
                )
        buffers = {
            name: _native.DeviceMemory(self._device, size)
            for name, size in sizes.items()
        }
        for context in self._contexts.values():
            for name, memory in buffers.items():
                context.set_tensor_address(name, memory.address)
        return buffers

    def _bytes(self, name: str, shape: tuple[int, ...]) -> int:
        return math.prod(shape) * self._dtypes[name][1].itemsize

    def run(
        self, inputs: Mapping[str, np.ndarray], wanted: set[str] | None
    ) -> dict[str, OutputValue]:
        # TensorRT works on the thread's current device (a worker of this instance,
        # or a caller's thread running it inline).
        _native.cuda_set_device(self._device)
        shapes = {name: tuple(array.shape) for name, array in inputs.items()}
        profile = rules.choose_profile(self._engine, self._profiles, shapes, self._name)
        context = self._contexts[profile]
        queued = False
        try:
            for name, array in inputs.items():
                array = np.ascontiguousarray(array)
                tensor = self._engine.get(name)
                dynamic = tensor is not None and -1 in tensor.dims
                if dynamic and not context.set_input_shape(name, array.shape):
                    raise InvalidArgumentError(
                        f"request specifies invalid shape for input '{name}' for "
                        f"{self._name}"
                    )
                if array.nbytes:
                    queued = True
                    _native.cuda_copy_async(
                        self._buffers[name].address,
                        array.ctypes.data,
                        array.nbytes,
                        self._stream,
                        True,
                    )
            queued = True
            if not context.execute_async_v3(self._stream):
                raise InternalError(f"unable to enqueue for inference {self._name}")
            return self._read_outputs(context, wanted)
        finally:
            if queued:
                # Also on failure: the core reuses the arena buffers the copies
                # read from as soon as this returns.
                _native.cuda_stream_sync(self._stream)

    def _read_outputs(
        self, context: Any, wanted: set[str] | None
    ) -> dict[str, OutputValue]:
        staged: list[tuple[str, np.ndarray, tuple[int, ...]]] = []
        for tensor in self._engine.outputs:
            if wanted is not None and tensor.name not in wanted:
                continue
            shape = tuple(int(d) for d in context.get_tensor_shape(tensor.name))
            wire, dtype = self._dtypes[tensor.name]
            nbytes = self._bytes(tensor.name, shape)
            host = _native.arena_array(nbytes, self._server)
            if nbytes:
                _native.cuda_copy_async(
                    host.ctypes.data,
                    self._buffers[tensor.name].address,
                    nbytes,
                    self._stream,
                    False,
                )
            staged.append((tensor.name, host, shape))
        _native.cuda_stream_sync(self._stream)
        out: dict[str, OutputValue] = {}
        for name, host, shape in staged:
            wire, dtype = self._dtypes[name]
            array = host.view(dtype).reshape(shape)
            out[name] = (wire, array) if wire == "BF16" else array
        return out

    def close(self) -> None:
        self._contexts.clear()
        self._buffers = {}


class TensorRTBackend:
    """Backend ``tensorrt`` (platform ``tensorrt_plan``)."""

    name = "tensorrt"

    def auto_complete_config(self, config: ModelConfig, ctx: ModelContext) -> None:
        """Fill max_batch_size, inputs and outputs from the engine, as Triton does
        when the first instance group is on a GPU (the engine is read on it)."""
        groups = config.instance_group
        if not groups or groups[0].kind != mc.ModelInstanceGroup.KIND_GPU:
            return
        trt = _tensorrt()
        try:
            path = _model_path(ctx)
        except TritonXError:
            return  # load_model reports the missing file
        from tritonx.config import apply_auto_complete_update

        device = groups[0].gpus[0] if groups[0].gpus else 0
        try:
            runtime, engine = _deserialize(trt, path.read_bytes(), device)
        except TritonXError as exc:
            raise InternalError(
                f"unable to load plan file to auto complete config: {path}: {exc}"
            ) from exc
        description = describe(trt, engine)
        del engine, runtime  # the engine first: it must not outlive its runtime
        apply_auto_complete_update(config, rules.auto_complete(config, description))

    def load_model(self, ctx: ModelContext) -> TensorRTModel:
        return TensorRTModel(ctx)


def create_backend() -> TensorRTBackend:
    return TensorRTBackend()
