"""What the tensorrt backend knows of an engine, and Triton's rules over it.

The engine is read once (``tensorrt_backend.describe``) into an ``EngineDescription``:
its I/O tensors, their types and dims (-1 where dynamic) and each input's
min/opt/max shape per optimization profile. Everything decided from that, with no
TensorRT needed, lives here: auto-complete of the model configuration, the load-time
checks of a written configuration, which optimization profiles an instance uses and
which one runs a batch. The rules and messages are those of Triton's tensorrt
backend (2.5x), so a repository moved between the two servers behaves alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tritonx.config._pb import mc
from tritonx.config.datatypes import datatype_name
from tritonx.errors import InvalidArgumentError

log = logging.getLogger("tritonx.backends.tensorrt")

Shape = tuple[int, ...]

# TensorRT's DataType (by enum name) -> model configuration type. FP8, INT4, FP4 and
# anything newer have no Triton type: such a tensor makes the model refuse to load.
_DATA_TYPES: dict[str, int] = {
    "FLOAT": mc.TYPE_FP32,
    "HALF": mc.TYPE_FP16,
    "BF16": mc.TYPE_BF16,
    "INT8": mc.TYPE_INT8,
    "UINT8": mc.TYPE_UINT8,
    "INT32": mc.TYPE_INT32,
    "INT64": mc.TYPE_INT64,
    "BOOL": mc.TYPE_BOOL,
}


def data_type_of(trt_name: str) -> int:
    """The model configuration type of a TensorRT DataType name (TYPE_INVALID when
    Triton has none)."""
    return _DATA_TYPES.get(trt_name, mc.TYPE_INVALID)


@dataclass(frozen=True)
class ProfileShapes:
    """One input's shape range in one optimization profile."""

    min: Shape
    opt: Shape
    max: Shape


@dataclass(frozen=True)
class EngineTensor:
    name: str
    is_input: bool
    data_type: int  # model configuration type; TYPE_INVALID when Triton has none
    dims: Shape  # -1 where dynamic
    profiles: tuple[ProfileShapes, ...] = ()  # inputs: one per optimization profile
    shape_tensor: bool = False
    linear: bool = True  # a linear (row-major) memory format


@dataclass(frozen=True)
class EngineDescription:
    tensors: tuple[EngineTensor, ...]
    num_profiles: int

    @property
    def inputs(self) -> list[EngineTensor]:
        return [t for t in self.tensors if t.is_input]

    @property
    def outputs(self) -> list[EngineTensor]:
        return [t for t in self.tensors if not t.is_input]

    def get(self, name: str) -> EngineTensor | None:
        return next((t for t in self.tensors if t.name == name), None)


# -- optimization profiles ------------------------------------------------------


def instance_profiles(
    names: Sequence[str], num_profiles: int, instance: str
) -> list[int]:
    """The profiles an instance group names (``profile: ["0", "2"]``), checked; none
    named means profile 0. Repeats are dropped (Triton reuses the context)."""
    if not names:
        return [0]
    chosen: list[int] = []
    for name in names:
        if not name:
            raise InvalidArgumentError("profile name must not be empty")
        try:
            index = int(name)
        except ValueError:
            raise InvalidArgumentError(f"unable to parse '{name}': stoi") from None
        if not 0 <= index < num_profiles:
            raise InvalidArgumentError(
                f"Can not set the specified optimization profile {name}[{index}] for "
                f"{instance}. Expected optimization profile index range "
                f"0-{num_profiles - 1}"
            )
        if index in chosen:
            log.warning(
                "The optimization profile %s[%d] for %s is listed twice",
                name,
                index,
                instance,
            )
            continue
        chosen.append(index)
    return chosen


def _shape_error(tensor: EngineTensor, profile: int, shape: Shape) -> str | None:
    """Why ``shape`` is outside ``tensor``'s range in ``profile`` (None: inside)."""
    bounds = tensor.profiles[profile]
    if len(shape) != len(bounds.max):
        return (
            f"model expected {len(bounds.max)} dimensions but received "
            f"{len(shape)} dimensions"
        )
    for i, (value, low, high) in enumerate(
        zip(shape, bounds.min, bounds.max, strict=True)
    ):
        if not low <= value <= high:
            return (
                f"model expected the shape of dimension {i} to be between {low} "
                f"and {high} but received {value}"
            )
    return None


def choose_profile(
    engine: EngineDescription,
    profiles: Sequence[int],
    shapes: Mapping[str, Shape],
    instance: str,
) -> int:
    """The profile that runs a batch of input ``shapes``: among those whose ranges
    hold every shape, the one nearest its OPT shapes (sum of absolute differences);
    when none holds them, the lowest profile, whose range check then fails the batch
    with Triton's "request specifies invalid shape" text."""
    if len(profiles) == 1:
        best = profiles[0]
    else:
        best = -1
        best_distance = 0
        for profile in profiles:
            distance = 0
            fits = True
            for tensor in engine.inputs:
                shape = shapes.get(tensor.name)
                if shape is None:
                    continue
                if _shape_error(tensor, profile, shape) is not None:
                    fits = False
                    break
                opt = tensor.profiles[profile].opt
                distance += sum(abs(a - b) for a, b in zip(shape, opt, strict=True))
            if fits and (best < 0 or distance < best_distance):
                best, best_distance = profile, distance
        if best < 0:
            best = min(profiles)
            listed = " ".join(f"{p}[{p}]" for p in profiles)
            log.warning(
                "failed to find any Optimization Profile among [ %s ] to support the "
                "requested dimensions (or shape values), proceeding with first "
                "profile.",
                listed,
            )
    for tensor in engine.inputs:
        shape = shapes.get(tensor.name)
        if shape is None:
            continue
        why = _shape_error(tensor, best, shape)
        if why is not None:
            raise InvalidArgumentError(
                f"request specifies invalid shape for input '{tensor.name}' for "
                f"{instance}. Error details: {why}"
            )
    return best


def profile_max_batch(engine: EngineDescription, profiles: Iterable[int]) -> int:
    """The largest batch the profiles take: per profile the smallest kMAX of dim 0
    over the inputs, then the largest of those (0 when no input has a dim)."""
    best = 0
    for profile in profiles:
        limits = [
            t.profiles[profile].max[0] for t in engine.inputs if t.profiles[profile].max
        ]
        if limits:
            best = max(best, min(limits))
    return best


# -- auto-complete ----------------------------------------------------------------


def _io_of(config: mc.ModelConfig, is_input: bool) -> Any:
    """The config's input or output list (a protobuf repeated field)."""
    return config.input if is_input else config.output


def _batching_hint(config: mc.ModelConfig, engine: EngineDescription) -> bool | None:
    """What the tensors written in the config say about batching: True (their dims
    leave the engine's first dim out), False (they name every dim), None (no dims)."""
    hint: bool | None = None
    for is_input in (True, False):
        for io in _io_of(config, is_input):
            tensor = engine.get(io.name)
            ragged = is_input and io.allow_ragged_batch  # outputs have no such flag
            if tensor is None or (len(io.dims) == 0 and not ragged):
                continue
            this = ragged or len(io.dims) == len(tensor.dims) - 1
            if hint is not None and hint != this:
                raise InvalidArgumentError(
                    f"unable to autofill for '{config.name}', model tensor "
                    "configurations are contradicting each other in terms of whether "
                    "batching is supported"
                )
            hint = this
    return hint


def _fill_tensor(io: mc.ModelInput, tensor: EngineTensor, batching: bool) -> None:
    if io.data_type == mc.TYPE_INVALID:
        io.data_type = tensor.data_type
    if len(io.dims) == 0:
        dims = tensor.dims[1:] if batching else tensor.dims
        if dims:
            io.dims.extend(dims)
        else:
            io.dims.append(1)
            io.reshape.SetInParent()


def _fill_io(
    config: mc.ModelConfig, engine: EngineDescription, is_input: bool, batching: bool
) -> None:
    kind = "input" if is_input else "output"
    listed = _io_of(config, is_input)
    engine_tensors = engine.inputs if is_input else engine.outputs
    if len(listed) == 0:
        for tensor in engine_tensors:
            io = listed.add()
            io.name = tensor.name
            _fill_tensor(io, tensor, batching)
        return
    allowed = ", ".join(t.name for t in engine_tensors)
    for io in listed:
        found = engine.get(io.name)
        if found is None or found.is_input != is_input:
            raise InvalidArgumentError(
                f"unexpected inference {kind} '{io.name}', allowed {kind}s are: "
                f"{allowed}"
            )
        _fill_tensor(io, found, batching)


def auto_complete(config: mc.ModelConfig, engine: EngineDescription) -> mc.ModelConfig:
    """A copy of ``config`` with max_batch_size, inputs and outputs filled in from
    the engine, by the rules of Triton's tensorrt backend."""
    updated = mc.ModelConfig()
    updated.CopyFrom(config)
    names = [p for group in config.instance_group for p in group.profile]
    for name in names:
        if not name.isdigit() or int(name) >= engine.num_profiles:
            raise InvalidArgumentError(
                f"unable to autofill for '{config.name}', configuration specified "
                f"invalid profile {name} . Number of profiles supported by TensorRT "
                f"engine: {engine.num_profiles}"
            )
    derived = profile_max_batch(engine, sorted({int(n) for n in names}) or [0])
    hint = _batching_hint(config, engine)
    if hint is True and derived == 0:
        raise InvalidArgumentError(
            f"autofill failed for model '{config.name}': model tensor shape "
            "configuration hints for dynamic batching but the underlying engine "
            "doesn't support batching."
        )
    if hint is False:
        log.warning(
            "The specified dimensions in model config for %s hints that batching is "
            "unavailable",
            config.name,
        )
        derived = 0
    if updated.max_batch_size == 0:
        updated.max_batch_size = derived
    elif updated.max_batch_size > derived:
        raise InvalidArgumentError(
            f"autofill failed for model '{config.name}': configuration specified "
            f"max-batch {updated.max_batch_size} but TensorRT engine only supports "
            f"max-batch {derived}"
        )
    if updated.max_batch_size > 1 and updated.WhichOneof("scheduling_choice") is None:
        updated.dynamic_batching.SetInParent()
    batching = updated.max_batch_size > 0
    _fill_io(updated, engine, True, batching)
    _fill_io(updated, engine, False, batching)
    return updated


# -- load-time checks --------------------------------------------------------------

SUPPORTED_TYPES = frozenset(_DATA_TYPES.values())


def _full_shape(io: mc.ModelInput, batching: bool) -> list[int]:
    dims = list(io.reshape.shape) if io.HasField("reshape") else list(io.dims)
    return ([-1] if batching else []) + dims


def _dims_text(
    model: str, name: str, engine_dims: Shape, config_dims: list[int], batching: bool
) -> str:
    engine_shape = "[" + ",".join(str(d) for d in engine_dims) + "]"
    config_shape = "[" + ",".join(str(d) for d in config_dims) + "]"
    if batching:
        how = (
            f"{len(config_dims)} dimensions (an initial batch dimension because "
            "max_batch_size > 0 followed by the explicit tensor shape, making "
            f"complete shape {config_shape})"
        )
    else:
        how = f"{len(config_dims)} dimensions (shape {config_shape})"
    return (
        f"model '{model}', tensor '{name}': the model expects {len(engine_dims)} "
        f"dimensions (shape {engine_shape}) but the model configuration specifies "
        f"{how}"
    )


def check_config(
    config: mc.ModelConfig,
    engine: EngineDescription,
    profiles: Sequence[int],
    instance: str,
) -> None:
    """Refuse a configuration the engine cannot serve, with Triton's texts."""
    model = config.name
    batching = config.max_batch_size > 0
    if len(config.input) > len(engine.inputs):
        raise InvalidArgumentError(
            f"unable to load model '{model}', configuration expects "
            f"{len(config.input)} inputs, model provides at most {len(engine.inputs)}"
        )
    for is_input in (True, False):
        kind = "input" if is_input else "output"
        listed = {io.name: io for io in _io_of(config, is_input)}
        for io in listed.values():
            if io.data_type not in SUPPORTED_TYPES:
                raise InvalidArgumentError(
                    f"unsupported datatype {datatype_name(io.data_type)} for {kind} "
                    f"'{io.name}' for model '{model}'"
                )
            tensor = engine.get(io.name)
            if tensor is None or tensor.is_input != is_input:
                allowed = ", ".join(
                    t.name for t in (engine.inputs if is_input else engine.outputs)
                )
                raise InvalidArgumentError(
                    f"unexpected inference {kind} '{io.name}', allowed {kind}s are: "
                    f"{allowed}"
                )
        for tensor in engine.inputs if is_input else engine.outputs:
            io = listed.get(tensor.name)
            if io is None:
                raise InvalidArgumentError(
                    f"expected configuration for {kind} '{tensor.name}' for {instance}"
                )
            if tensor.shape_tensor:
                raise InvalidArgumentError(
                    f"unable to load model '{model}': '{tensor.name}' is a shape "
                    "tensor, which tritonx's tensorrt backend does not support"
                )
            if not tensor.linear:
                raise InvalidArgumentError(
                    f"unable to load model '{model}': '{tensor.name}' uses a "
                    "non-linear IO format, which tritonx's tensorrt backend does not "
                    "support"
                )
            if tensor.data_type != io.data_type:
                raise InvalidArgumentError(
                    f"unexpected datatype {datatype_name(tensor.data_type)} for "
                    f"inference {kind} '{tensor.name}', expecting "
                    f"{datatype_name(io.data_type)} for {instance}"
                )
            full = _full_shape(io, batching)
            if len(full) != len(tensor.dims) or any(
                a != b and a != -1 and b != -1
                for a, b in zip(full, tensor.dims, strict=True)
            ):
                raise InvalidArgumentError(
                    _dims_text(model, tensor.name, tensor.dims, full, batching)
                )
            if is_input:
                _check_in_profiles(config, tensor, full, profiles)
    if batching:
        most = profile_max_batch(engine, profiles)
        if most < config.max_batch_size:
            raise InvalidArgumentError(
                f"unable to load model '{model}': configuration specified max-batch "
                f"{config.max_batch_size} but TensorRT engine only supports max-batch "
                f"{most}"
            )


def _check_in_profiles(
    config: mc.ModelConfig,
    tensor: EngineTensor,
    full: list[int],
    profiles: Sequence[int],
) -> None:
    """Each fixed config dim must lie in the range of some profile the instance
    uses (a -1 may take any value)."""
    why = ""
    for profile in profiles:
        bounds = tensor.profiles[profile]
        bad = next(
            (
                (i, v, lo, hi)
                for i, (v, lo, hi) in enumerate(
                    zip(full, bounds.min, bounds.max, strict=True)
                )
                if v != -1 and not lo <= v <= hi
            ),
            None,
        )
        if bad is None:
            return
        i, v, lo, hi = bad
        why = (
            f"model expected the shape of dimension {i} to be between {lo} and {hi} "
            f"but received {v}"
        )
    raise InvalidArgumentError(
        f"model configuration specified invalid shape for input '{tensor.name}' for "
        f"model {config.name}. Error details: {why}"
    )


def require_gpu_instances(config: mc.ModelConfig) -> None:
    """TensorRT runs on GPUs only (KIND_CPU and KIND_MODEL refused, as Triton does
    without multi-device)."""
    for group in config.instance_group:
        if group.kind != mc.ModelInstanceGroup.KIND_GPU:
            raise InvalidArgumentError(
                f"unable to load model '{config.name}', TensorRT backend supports "
                "only GPU device"
            )
