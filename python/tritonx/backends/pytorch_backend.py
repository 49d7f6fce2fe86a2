"""The pytorch backend: TorchScript (``model.pt``), ``torch.export`` programs and
AOTInductor packages (``model.pt2``), one module per instance on its device.

The core gathers a batch's inputs in C++ and hands numpy views of its arena buffers
to ``execute_batch``; they become tensors with ``torch.from_numpy`` (no copy) and
the output tensors go back as they are, through DLPack (no copy, GPU ones on their
device), which the core slices per request. A TorchScript call releases the GIL for
the whole graph, and eager ops (exported programs run as an FX GraphModule) release
it inside each kernel, so other instances and the frontends keep running while a
batch computes.

Thread settings that torch keeps per thread (intra-op thread count with OpenMP,
grad mode, optimized execution) are applied on the thread that executes, the first
time it does; process-wide JIT switches are applied at load, as Triton does.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tritonx.backends import torch_io, torch_sequence
from tritonx.backends.base import (
    GatheredInstance,
    InstanceContext,
    InstanceKeeper,
    ModelConfig,
    ModelContext,
    OutputValue,
)
from tritonx.backends.torch_options import TorchSettings, load_op_libraries
from tritonx.config._pb import mc
from tritonx.config.datatypes import datatype_name
from tritonx.config.settings import int_setting
from tritonx.errors import (
    InternalError,
    InvalidArgumentError,
    TritonXError,
    UnavailableError,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("tritonx.backends.pytorch")

DEFAULT_MODEL_FILENAME = "model.pt"
EXPORTED_MODEL_FILENAME = "model.pt2"

# The arena's buffers are read-only views; torch warns once that it cannot mark
# the tensors read-only. Models must not write to their inputs (as in Triton).
warnings.filterwarnings(
    "ignore", message="The given NumPy array is not writable", category=UserWarning
)

# torch.export.load keeps its deserializer in a global: models loading in parallel
# (the manager's thread pool) must take turns.
_DESERIALIZE_LOCK = threading.Lock()

# The C++ guard itself: torch.inference_mode()'s Python wrapper costs ~4x more
# per call (measured 13 us vs 3.5 us on a loaded 2-vCPU VM).
_InferenceGuard = getattr(torch._C, "_InferenceMode", None)


def _inference_mode() -> Any:
    if _InferenceGuard is not None:
        return _InferenceGuard(True)
    return torch.inference_mode()


def _model_path(ctx: ModelContext) -> Path:
    """``default_model_filename``, else model.pt, else model.pt2 (Triton's order;
    autofill may have written the default model.pt, which counts as unnamed)."""
    named = ctx.model_file.name and ctx.model_file != ctx.version_dir
    path = ctx.model_file if named else ctx.version_dir / DEFAULT_MODEL_FILENAME
    if path.name == DEFAULT_MODEL_FILENAME and not path.exists():
        alternative = ctx.version_dir / EXPORTED_MODEL_FILENAME
        if alternative.exists():
            log.info(
                "Using alternative default model file '%s' for model '%s'",
                EXPORTED_MODEL_FILENAME,
                ctx.name,
            )
            path = alternative
    if not path.is_file():
        raise UnavailableError(
            f"unable to find '{path}' for model instance '{ctx.name}'"
        )
    return path


def _artifact_kind(path: Path) -> str:
    """ "script", "export" (torch.export.save) or "aoti" (an AOTInductor package)."""
    if path.suffix != ".pt2":
        return "script"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return "export"  # torch.export.load reports what is wrong
    return "aoti" if any("/aotinductor/" in n for n in names) else "export"


def _device_for(ictx: InstanceContext) -> torch.device | None:
    """cpu, cuda:N for a GPU instance, None for KIND_MODEL (where it was saved)."""
    if ictx.kind == "GPU":
        if not torch.cuda.is_available():
            raise UnavailableError(
                f"unable to create GPU instance '{ictx.name}': this torch build "
                "has no usable CUDA device"
            )
        if ictx.device_id >= torch.cuda.device_count():
            raise UnavailableError(
                f"unable to create GPU instance '{ictx.name}': CUDA device "
                f"{ictx.device_id} does not exist"
            )
        return torch.device("cuda", ictx.device_id)
    if ictx.kind == "MODEL":
        return None
    return torch.device("cpu")


def _batch_input_positions(
    names: list[str], targets: list[str], arguments: tuple[str, ...] | list[str]
) -> list[int]:
    """Forward positions of batch-input targets: their argument name when forward
    has one, else their ``__<index>``, else after the config's inputs in order."""
    out = []
    for i, target in enumerate(targets):
        if target in arguments:
            out.append(list(arguments).index(target))
            continue
        try:
            index = torch_io.index_of(target)
        except ValueError:
            index = None
        out.append(index if index is not None else len(names) + i)
    return out


class TorchModel(InstanceKeeper):
    """A loaded model version: config checks, settings, modules per device."""

    def __init__(self, ctx: ModelContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.name = ctx.name
        self.config = ctx.config
        # Before anything reads the model file: it may call the libraries' ops.
        load_op_libraries(ctx.config)
        self.path = _model_path(ctx)
        self.kind = _artifact_kind(self.path)
        self.settings = TorchSettings(ctx.config)
        self.settings.apply_process_wide()
        self.batching = ctx.config.max_batch_size > 0
        self._check_config()
        self._lock = threading.Lock()
        self._shared: dict[str, tuple[Any, torch_io.Signature]] = {}
        cpu_instances = sum(
            g.count
            for g in ctx.config.instance_group
            if g.kind != mc.ModelInstanceGroup.KIND_GPU
        )
        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
        # Instances share the cores instead of each spawning a pool as big as
        # the machine (oversubscription costs more than it gains).
        self.cpu_threads = self.settings.intra_op_threads or max(
            1, cores // max(1, cpu_instances)
        )

    def _check_config(self) -> None:
        supported = torch_io.torch_dtypes()
        for kind, tensors in (
            ("input", self.config.input),
            ("output", self.config.output),
        ):
            if len(tensors) == 0:
                raise InternalError(
                    f"model configuration must contain at least one {kind}, none "
                    "were specified."
                )
            for t in tensors:
                if t.data_type in supported:
                    continue
                if t.data_type == mc.TYPE_STRING and self.kind == "script":
                    dims = (
                        list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)
                    )
                    if len(dims) + (1 if self.batching else 0) > 1:
                        raise InternalError(
                            "Triton only supports 1 dimensional List of String as "
                            f"{kind} for '{t.name}' for model '{self.name}'"
                        )
                    continue
                raise InternalError(
                    f"unsupported datatype {datatype_name(t.data_type)} for {kind} "
                    f"'{t.name}' for model '{self.name}'"
                )

    def load_module(
        self, device: torch.device | None, instance: str
    ) -> tuple[Any, torch_io.Signature]:
        """A module on ``device`` and its signature; shared per device when
        ENABLE_WEIGHT_SHARING is set."""
        key = str(device)
        with self._lock:
            if self.settings.weight_sharing and key in self._shared:
                log.info("Reusing TorchScript model for instance '%s'", instance)
                return self._shared[key]
        try:
            with torch.inference_mode(self.settings.inference_mode):
                loaded = self._load(device)
        except TritonXError:
            raise
        except Exception as exc:
            raise InternalError(f"failed to load model '{self.name}': {exc}") from exc
        if self.settings.weight_sharing:
            with self._lock:
                loaded = self._shared.setdefault(key, loaded)
        return loaded

    def _load(self, device: torch.device | None) -> tuple[Any, torch_io.Signature]:
        if self.kind == "script":
            module = torch.jit.load(str(self.path), map_location=device)
            module.eval()
            return module, torch_io.script_signature(module)
        if self.kind == "aoti":
            index = device.index if device is not None and device.type == "cuda" else -1
            with _DESERIALIZE_LOCK:
                package = torch._inductor.aoti_load_package(
                    str(self.path), device_index=index if index is not None else -1
                )
            args = [t.name for t in self.config.input]
            return package, torch_io.Signature(arguments=tuple(args), dict_input=False)
        with _DESERIALIZE_LOCK:
            program = torch.export.load(str(self.path))
        sig = torch_io.exported_signature(program)
        if device is not None and device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        return program.module(), sig

    def create_instance(self, ictx: InstanceContext) -> TorchInstance:
        return self.keep(TorchInstance(self, ictx))

    def unload(self) -> None:
        self.close_instances()
        self._shared.clear()


class TorchInstance(GatheredInstance):
    """One module on one device; called by its core worker thread."""

    def __init__(self, model: TorchModel, ictx: InstanceContext) -> None:
        self._model = model
        self._name = ictx.name
        self._settings = model.settings
        self._device = _device_for(ictx)
        self._cuda = self._device is not None and self._device.type == "cuda"
        self._script = model.kind == "script"
        self._threads = 0 if self._cuda else model.cpu_threads
        # Worker threads the core runs this instance on (placement.core_executors):
        # on a GPU, two batches share the instance's stream, so the GPU computes
        # one while the host gathers the next or answers the last. Module calls
        # are re-entrant (Triton's weight sharing relies on it too); AOTInductor
        # packages run one call at a time and gain nothing.
        self.pipeline_depth = (
            self._settings.pipeline_depth if self._cuda and model.kind != "aoti" else 1
        )
        self._stream: Any = None
        # A GPU instance wants a lone request's inputs in the pinned arena too
        # (read by the core's executor): from pageable memory the host->device
        # copy is synchronous and would stall the pipeline.
        self.staged_inputs = self._cuda
        if self._cuda:
            self._stream = (
                torch.cuda.ExternalStream(ictx.cuda_stream, device=self._device)
                if ictx.cuda_stream
                else torch.cuda.current_stream(self._device)
            )
        where = (
            "CPU device 0"
            if self._device is None or not self._cuda
            else (f"GPU device {ictx.device_id}")
        )
        log.info("TRITONBACKEND_ModelInstanceInitialize: %s (%s)", ictx.name, where)
        self._module, sig = model.load_module(self._device, ictx.name)
        self._prepared = threading.local()
        self._map_inputs(model, sig)
        self._map_outputs(model, sig)

    # -- load-time mapping (Triton's ValidateInputs / ValidateOutputs) ---------

    def _map_inputs(self, model: TorchModel, sig: torch_io.Signature) -> None:
        config = model.config
        names = [t.name for t in config.input]
        self._dict_input = sig.dict_input
        # The sequence batcher's controls and state inputs count as inputs too.
        controls = torch_sequence.control_inputs(config)
        expected = (
            len(names)
            + len(config.batch_input)
            + len(controls)
            + len(config.sequence_batching.state)
        )
        if (
            not sig.dict_input
            and model.kind != "aoti"
            and len(sig.arguments) != expected
        ):
            raise InvalidArgumentError(
                f"unable to load model '{model.name}', configuration expects "
                f"{expected} inputs, model provides {len(sig.arguments)}"
            )
        if sig.dict_input:
            positions = list(range(len(names)))
        else:
            convention = torch_io.input_convention(model.name, names, sig.arguments)
            torch_sequence.check_state_naming(model.name, config, convention, "input")
            positions = torch_io.positions(convention, names, sig.arguments)
            if any(p >= max(len(sig.arguments), len(names)) for p in positions):
                raise InvalidArgumentError(
                    f"unable to load model '{model.name}': an input index is larger "
                    "than the number of inputs the model takes"
                )
        # Batch inputs (ragged batching) follow the config's inputs, as Triton's
        # libtorch backend maps them: by forward argument name, by <name>__<index>,
        # else in config order after the inputs.
        targets = [n for bi in config.batch_input for n in bi.target_name]
        target_positions = _batch_input_positions(
            names, targets, sig.arguments if not sig.dict_input else ()
        )
        sequence = controls + torch_sequence.state_inputs(model.name, config)
        first_free = len(names) + len(targets)
        sequence_positions = [
            first_free + i if sig.dict_input else t.position
            for i, t in enumerate(sequence)
        ]
        if model.kind != "aoti" and not sig.dict_input:
            for t in sequence:
                if t.position >= len(sig.arguments):
                    raise InvalidArgumentError(
                        f"unable to load model '{model.name}': input '{t.name}' has "
                        f"index {t.position}, but the model takes "
                        f"{len(sig.arguments)} inputs"
                    )
        self._arity = max(
            first_free + len(sequence),
            *(p + 1 for p in positions),
            *(p + 1 for p in sequence_positions),
        )
        # Arguments past this position go by keyword (programs exported so).
        self._keywords = sig.keywords
        self._positional = len(sig.arguments) - len(sig.keywords)
        self._inputs = (
            [
                (
                    t.name,
                    pos,
                    t.data_type == mc.TYPE_BF16,
                    t.data_type == mc.TYPE_STRING,
                )
                for t, pos in zip(config.input, positions, strict=True)
            ]
            + [
                (name, pos, False, False)
                for name, pos in zip(targets, target_positions, strict=True)
            ]
            + [
                (t.name, pos, t.data_type == mc.TYPE_BF16, False)
                for t, pos in zip(sequence, sequence_positions, strict=True)
            ]
        )
        for name, dtype, _ in sig.input_tensors:
            conf = next((t for t in config.input if t.name == name), None)
            if (
                conf is not None
                and dtype != mc.TYPE_INVALID
                and conf.data_type != dtype
            ):
                raise InvalidArgumentError(
                    f"unable to load model '{model.name}', configuration expects "
                    f"datatype {datatype_name(conf.data_type)} for input '{name}', "
                    f"model provides {datatype_name(dtype)}"
                )

    def _map_outputs(self, model: TorchModel, sig: torch_io.Signature) -> None:
        names = [t.name for t in model.config.output]
        returns_dict = sig.output_keys is not None
        if model.kind == "script":
            returns = model_returns = self._module.forward.schema.returns
            returns_dict = len(model_returns) == 1 and (
                returns[0].type.kind() == "DictType"
            )
        self._dict_output = returns_dict
        convention = torch_io.output_convention(model.name, names)
        if not returns_dict:  # a dict is read by key (tritonx only)
            torch_sequence.check_state_naming(
                model.name, model.config, convention, "output"
            )
        positions = torch_io.positions(convention, names, ())
        dtypes = torch_io.torch_dtypes()
        self._outputs = [
            (t.name, pos, dtypes.get(t.data_type), t.data_type)
            for t, pos in zip(model.config.output, positions, strict=True)
        ]
        # Each state's next value, read on every run for the sequence batcher.
        states = torch_sequence.state_outputs(model.name, model.config)
        self._state_outputs = {t.name for t in states}
        self._outputs += [
            (t.name, t.position, dtypes.get(t.data_type), t.data_type)
            for t in states
            if t.name not in names
        ]

    # -- execution -------------------------------------------------------------

    def _prepare_thread(self) -> None:
        # torch keeps the intra-op thread count per thread (OpenMP): set it once on
        # each thread that runs this instance (its worker, or a blocking caller's
        # thread with inline dispatch).
        if self._threads and getattr(self._prepared, "threads", 0) != self._threads:
            torch.set_num_threads(self._threads)
            self._prepared.threads = self._threads
        if self._script:
            # Thread-local too, and another model may have run on this thread.
            torch._C._set_graph_executor_optimize(self._settings.optimized)

    def _arguments(self, inputs: Mapping[str, np.ndarray]) -> list[Any]:
        args: list[Any] = [None] * self._arity
        for name, pos, bf16, is_bytes in self._inputs:
            array = inputs.get(name)
            if array is None:
                raise InvalidArgumentError(f"expected input '{name}' is missing")
            if is_bytes:
                try:
                    value: Any = [
                        v.decode("utf-8") if isinstance(v, bytes) else str(v)
                        for v in array.reshape(-1)
                    ]
                except UnicodeDecodeError as exc:
                    raise InvalidArgumentError(
                        f"input '{name}' is not valid UTF-8: {exc}"
                    ) from None
            else:
                value = torch.from_numpy(array)
                if bf16:
                    value = value.view(torch.bfloat16)
                if self._device is not None and self._device.type != "cpu":
                    value = value.to(self._device, non_blocking=True)
            args[pos] = value
        if self._dict_input:
            return [{name: args[pos] for name, pos, _, _ in self._inputs}]
        return args

    def run(
        self, inputs: Mapping[str, np.ndarray], wanted: set[str] | None
    ) -> dict[str, OutputValue]:
        self._prepare_thread()
        if self._settings.inference_mode:
            with _inference_mode():
                outputs = self._call(inputs, wanted)
        else:
            # Grad mode is per thread; put back what the thread had.
            previous = torch.is_grad_enabled()
            torch._C._set_grad_enabled(False)
            try:
                outputs = self._call(inputs, wanted)
            finally:
                torch._C._set_grad_enabled(previous)
        if self._settings.cache_cleaning and self._cuda:
            torch.cuda.empty_cache()
        return outputs

    def _call(
        self, inputs: Mapping[str, np.ndarray], wanted: set[str] | None
    ) -> dict[str, OutputValue]:
        if self._stream is None:
            return self._call_on_stream(inputs, wanted)
        # The core's stream for this instance: copies in, kernels and copies out
        # are queued on it without waiting; the batch ends by waiting (GIL
        # released) for an event recorded after its own work, not for the whole
        # stream, where the next batch of a pipelined instance may already be
        # queued. Also when the model failed: the core reuses the arena buffers
        # the host->device copies read from as soon as this returns.
        done = torch.cuda.Event()
        try:
            with torch.cuda.stream(self._stream):
                return self._call_on_stream(inputs, wanted)
        finally:
            done.record(self._stream)
            done.synchronize()

    def _call_on_stream(
        self, inputs: Mapping[str, np.ndarray], wanted: set[str] | None
    ) -> dict[str, OutputValue]:
        args = self._arguments(inputs)
        try:
            if self._keywords:
                named = dict(zip(self._keywords, args[self._positional :], strict=True))
                result = self._module(*args[: self._positional], **named)
            else:
                result = self._module(*args)
        except TritonXError:
            raise
        except Exception as exc:
            raise InternalError(f"PyTorch execute failure: {exc}") from exc
        return self._read_outputs(result, wanted)

    def _read_outputs(
        self, result: Any, wanted: set[str] | None
    ) -> dict[str, OutputValue]:
        values = torch_io.returned_values(result)
        out: dict[str, OutputValue] = {}
        for name, pos, dtype, config_type in self._outputs:
            if isinstance(values, dict):
                if name not in values:
                    keys = ", ".join(sorted(str(k) for k in values))
                    raise InvalidArgumentError(
                        f"The output {name} in the model configuration is not a key "
                        f"of the dictionary the model returned (keys: {keys})"
                    )
                value = values[name]
            else:
                if pos >= len(values):
                    raise InvalidArgumentError(
                        f"The output {name} in the model configuration refers to an "
                        "output index which doesn't exist. This model has "
                        f"{len(values)} outputs"
                    )
                value = values[pos]
            if (
                wanted is not None
                and name not in wanted
                and name not in self._state_outputs
            ):
                continue
            out[name] = torch_io.to_output(name, value, dtype, config_type)
        return out

    def close(self) -> None:
        self._module = None


class TorchBackend:
    """Backend ``pytorch`` (platform ``pytorch_libtorch``)."""

    name = "pytorch"

    def auto_complete_config(self, config: ModelConfig, ctx: ModelContext) -> None:
        """Exported programs describe their tensors: fill what the config lacks.
        TorchScript keeps no shapes, so its config is left alone (as Triton)."""
        load_op_libraries(config)  # an exported program may call their ops
        try:
            path = _model_path(ctx)
        except TritonXError:
            return  # load_model reports the missing file
        if _artifact_kind(path) != "export":
            return
        from tritonx.config import apply_auto_complete_update

        try:
            with _DESERIALIZE_LOCK:
                program = torch.export.load(str(path))
        except Exception as exc:
            raise InternalError(f"failed to load model '{ctx.name}': {exc}") from exc
        sig = torch_io.exported_signature(program)
        default = int_setting(ctx.backend_config, "default-max-batch-size")
        updated = torch_io.complete_from_signature(
            config, sig, default if default is not None else 4
        )
        if updated is not None:
            apply_auto_complete_update(config, updated)

    def load_model(self, ctx: ModelContext) -> TorchModel:
        return TorchModel(ctx)


def create_backend() -> TorchBackend:
    return TorchBackend()
