"""Triton's config checks, with its messages.

``validate_model_config`` holds the checks Triton runs while polling the repository
(a failure there is reported to clients as "failed to poll from model repository");
the others run when a version is loaded ("version N is at UNAVAILABLE state").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tritonx.config._pb import ModelConfig, ModelInput, ModelMetrics, ModelOutput, mc
from tritonx.config.backend_fields import (
    ENSEMBLE_PLATFORM,
    TRT_PLATFORM,
    backend_kind,
    platform_kind,
)
from tritonx.config.ensemble import validate_ensemble_graph
from tritonx.errors import InternalError, InvalidArgumentError

WILDCARD_DIM = -1
# Triton's default --min-supported-compute-capability, printed with std::to_string.
MIN_COMPUTE_CAPABILITY = "6.000000"


def _bad(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message)


def validate_model_config(config: ModelConfig) -> None:
    """Repository-poll checks (Triton's ValidateModelConfig)."""
    name = config.name
    if not name:
        raise _bad("model configuration must specify 'name'")
    if not config.backend:
        if config.platform != ENSEMBLE_PLATFORM:
            raise _bad(f"unexpected platform type '{config.platform}' for {name}")
    elif config.platform == ENSEMBLE_PLATFORM:
        raise _bad(
            f"Ensemble model '{name}' must have platform type '{config.platform}' "
            "and empty backend type"
        )
    kind = backend_kind(config.backend)
    if kind is not None and kind != platform_kind(config.platform):
        raise _bad(
            "unexpected 'platform' and 'backend' pair, got:"
            f"{config.platform}, {config.backend}"
        )
    if config.max_batch_size < 0:
        raise _bad(f"'max_batch_size' must be non-negative value for {name}")
    if not config.HasField("version_policy"):
        raise _bad(f"must specify 'version policy' for {name}")
    if config.HasField("dynamic_batching"):
        _validate_dynamic_batching(config)
    if config.HasField("sequence_batching"):
        _validate_sequence_batching(config)
    if config.HasField("ensemble_scheduling"):
        _validate_ensemble(config)
    elif config.platform == ENSEMBLE_PLATFORM:
        raise _bad(
            f"ensemble scheduling must be set for ensemble {name} whose platform is "
            f"{ENSEMBLE_PLATFORM}"
        )
    validate_response_cache(config)
    if config.HasField("model_metrics"):
        _validate_model_metrics(config.model_metrics)


def validate_response_cache(config: ModelConfig) -> None:
    """The response cache refuses decoupled models; also checked again once an
    ensemble is found decoupled by its steps (Triton's ensemble validation sets
    its transaction policy, and the load then fails the same way)."""
    if config.model_transaction_policy.decoupled and config.response_cache.enable:
        raise _bad(
            f"Response Cache does not currently support model {config.name} with "
            "'decoupled' transaction policy. Please disable the response cache."
        )


def _validate_dynamic_batching(config: ModelConfig) -> None:
    name = config.name
    db = config.dynamic_batching
    for size in db.preferred_batch_size:
        if size <= 0:
            raise _bad(f"dynamic batching preferred size must be positive for {name}")
        if size > config.max_batch_size:
            raise _bad(
                f"dynamic batching preferred size must be <= max batch size for {name}"
            )
    levels = db.priority_levels
    if levels != 0:
        if db.default_priority_level == 0 or db.default_priority_level > levels:
            raise _bad(
                f"default priority level must be in range [1, {levels}] for {name}"
            )
        for level in db.priority_queue_policy:
            if level == 0 or level > levels:
                raise _bad(
                    "priority queue policy must have priority level in range "
                    f"[1, {levels}] for {name}"
                )
    if db.preserve_ordering:
        if levels > 1:
            raise _bad(
                "Only one priority level is allowed when 'preserve_ordering' is "
                f"true for {name}"
            )
        policies = [db.default_queue_policy, *db.priority_queue_policy.values()]
        for policy in policies:
            if (
                policy.default_timeout_microseconds != 0
                and policy.timeout_action == mc.ModelQueuePolicy.DELAY
            ):
                raise _bad(
                    "Queue policy can not have DELAY as timeout action when "
                    f"'preserve_ordering' is true for {name}"
                )


def _validate_sequence_batching(config: ModelConfig) -> None:
    name = config.name
    sb = config.sequence_batching
    if config.response_cache.enable:
        raise _bad(
            f"Response Cache does not currently support model {name} with sequence "
            "batching scheduler. Please disable the response cache."
        )
    if sb.HasField("oldest"):
        for size in sb.oldest.preferred_batch_size:
            if size <= 0:
                raise _bad(
                    "sequence batching preferred batch size must be positive for "
                    f"{name}"
                )
            if size > config.max_batch_size:
                raise _bad(
                    "sequence batching preferred batch size must be <= max batch "
                    f"size for {name}"
                )
    # The control inputs: checked while polling, as Triton does.
    from tritonx.config.sequence import validate_sequence_controls

    validate_sequence_controls(config)
    if sb.HasField("direct"):
        util = sb.direct.minimum_slot_utilization
        if util < 0.0 or util > 1.0:
            raise _bad(
                "sequence batching minimum slot utilization must be in range "
                f"(0.0, 1.0] for {name}"
            )


def _validate_ensemble(config: ModelConfig) -> None:
    name = config.name
    if config.platform != ENSEMBLE_PLATFORM:
        raise _bad(
            f"ensemble scheduling cannot be set for model '{name}' whose platform "
            f"is not {ENSEMBLE_PLATFORM}"
        )
    if config.instance_group:
        raise _bad(f"instance group should not be specified for ensemble '{name}'")
    if config.HasField("optimization"):
        raise _bad(f"optimization should not be specified for ensemble '{name}'")
    if config.model_warmup:
        raise _bad(f"model_warmup can not be specified for ensemble '{name}'")
    if not config.ensemble_scheduling.step:
        raise _bad(f"must specify 'step' for ensemble '{name}'")
    validate_ensemble_graph(config)


def _validate_model_metrics(metrics: ModelMetrics) -> None:
    for control in metrics.metric_control:
        if not control.HasField("metric_identifier"):
            raise _bad("metric control must specify 'metric_identifier'")
        if not control.metric_identifier.family:
            raise _bad("metric identifier must specify non-empty 'family'")
        if not control.HasField("histogram_options"):
            raise _bad("metric control must specify 'histogram_options'")
        if not control.histogram_options.buckets:
            raise _bad("histogram options must specify non-empty 'buckets'")


def validate_instance_groups(config: ModelConfig, gpu_ids: Sequence[int] = ()) -> None:
    """Load-time instance group checks (Triton's ValidateInstanceGroup)."""
    if config.HasField("ensemble_scheduling"):
        return
    name = config.name
    if not config.instance_group:
        raise _bad(f"must specify one or more 'instance group's for {name}")
    kinds = mc.ModelInstanceGroup
    for group in config.instance_group:
        prefix = f"instance group {group.name} of model {name}"
        if group.kind == kinds.KIND_MODEL:
            if group.gpus:
                raise _bad(
                    f"{prefix} has kind KIND_MODEL but specifies one or more GPUs"
                )
        elif group.kind == kinds.KIND_GPU:
            if not group.gpus:
                if not gpu_ids:
                    raise _bad(f"{prefix} has kind KIND_GPU but no GPUs are available")
                raise _bad(f"{prefix} has kind KIND_GPU but specifies no GPUs")
            for gid in group.gpus:
                if gid not in gpu_ids:
                    listed = ", ".join(str(g) for g in sorted(gpu_ids))
                    raise _bad(
                        f"{prefix} specifies invalid or unsupported gpu id {gid}. "
                        "GPUs with at least the minimum required CUDA compute "
                        f"compatibility of {MIN_COMPUTE_CAPABILITY} are: {listed}"
                    )
        elif group.kind == kinds.KIND_CPU:
            if group.gpus:
                raise _bad(f"{prefix} has kind KIND_CPU but specifies one or more GPUs")
        else:
            raise InternalError(f"{prefix} has unexpected kind KIND_AUTO")
        if config.platform != TRT_PLATFORM and group.profile:
            # Triton prints no space between the platform and "specifies".
            raise _bad(
                f"{prefix} and platform {config.platform}specifies profile field "
                "which is only supported for TensorRT models"
            )


def element_count(dims: Iterable[int]) -> int:
    """Triton's GetElementCount: -1 if any dim is variable, 0 for no dims."""
    count = 0
    first = True
    for dim in dims:
        if dim == WILDCARD_DIM:
            return -1
        count = dim if first else count * dim
        first = False
    return count


def _chunks(dims: Iterable[int]) -> list[int]:
    # Element counts of the runs between variable-size dims.
    out, current = [], 1
    for dim in dims:
        if dim == WILDCARD_DIM:
            out.append(current)
            current = 1
        else:
            current *= dim
    out.append(current)
    return out


def _validate_io_shape(
    io: ModelInput | ModelOutput, max_batch_size: int, prefix: str
) -> None:
    if not io.name:
        raise _bad(prefix + "must specify 'name'")
    named = f"{prefix}'{io.name}' "
    if io.data_type == mc.TYPE_INVALID:
        raise _bad(named + "must specify 'data_type'")
    if not io.dims:
        raise _bad(named + "must specify 'dims'")
    has_reshape = io.HasField("reshape")
    if has_reshape and not io.reshape.shape and max_batch_size == 0:
        raise _bad(
            named + "cannot have empty reshape for non-batching model as scalar "
            "tensors are not supported"
        )
    for dim in io.dims:
        if dim < 1 and dim != WILDCARD_DIM:
            raise _bad(
                named + "dimension must be integer >= 1, or -1 to indicate a "
                "variable-size dimension"
            )
    if not has_reshape:
        return
    for dim in io.reshape.shape:
        if dim < 1 and dim != WILDCARD_DIM:
            raise _bad(
                named + "reshape dimensions must be integer >= 1, or -1 to indicate "
                "a variable-size dimension"
            )
    dims_size = element_count(io.dims)
    reshape_size = element_count(io.reshape.shape)
    # An empty reshape (scalar) is fine when dims hold exactly one element.
    if dims_size != reshape_size and (reshape_size != 0 or dims_size != 1):
        raise _bad(named + "has different size for dims and reshape")
    if dims_size == -1:
        a, b = _chunks(io.dims), _chunks(io.reshape.shape)
        if len(a) != len(b):
            raise _bad(
                named + "has different number of variable-size dimensions for dims "
                "and reshape"
            )
        if a != b:
            raise _bad(named + "has different size for dims and reshape")


def _validate_io(config: ModelConfig) -> None:
    mbs, platform = config.max_batch_size, config.platform
    for inp in config.input:
        _validate_io_shape(inp, mbs, "model input ")
        image = inp.format in (mc.ModelInput.FORMAT_NHWC, mc.ModelInput.FORMAT_NCHW)
        if image and len(inp.dims) != 3:
            raise _bad("model input NHWC/NCHW require 3 dims")
        _validate_tensor_flags(inp, platform, "input")
    for out in config.output:
        _validate_io_shape(out, mbs, "model output ")
        _validate_tensor_flags(out, platform, "output")
    _validate_batch_io(config)


def _validate_tensor_flags(
    io: ModelInput | ModelOutput, platform: str, what: str
) -> None:
    if platform != TRT_PLATFORM and io.is_shape_tensor:
        raise _bad("shape tensors are only supported for TensorRT platform")
    if io.is_non_linear_format_io:
        if platform != TRT_PLATFORM:
            raise _bad(
                "Non-linear IO format is only supported for the TensorRT platform"
            )
        if len(io.dims) != 3:
            raise _bad(f"Non-linear IO format {what} requires 3 dims")


def _validate_batch_io(config: ModelConfig) -> None:
    inputs = {i.name for i in config.input}
    outputs = {o.name for o in config.output}
    for bi in config.batch_input:
        kind = mc.BatchInput.Kind.Name(bi.kind)
        if len(bi.source_input) != 1:
            raise _bad(
                f"batch input kind '{kind}' expects 1 source input, got "
                f"{len(bi.source_input)}"
            )
        if bi.data_type not in (mc.TYPE_INT32, mc.TYPE_FP32):
            raise _bad("batch input data type must be TYPE_INT32 or TYPE_FP32")
        for src in bi.source_input:
            if src not in inputs:
                raise _bad(f"unknown source input name '{src}'")
    for bo in config.batch_output:
        kind = mc.BatchOutput.Kind.Name(bo.kind)
        if len(bo.source_input) != 1:
            raise _bad(
                f"batch output kind '{kind}' expects 1 source input, got "
                f"{len(bo.source_input)}"
            )
        for src in bo.source_input:
            if src not in inputs:
                raise _bad(f"unknown source input name '{src}'")
        seen: set[str] = set()
        for target in bo.target_name:
            if target not in outputs:
                raise _bad(f"unknown target output name '{target}'")
            if target in seen:
                raise _bad(f"target output name '{target}' can only be specified once")
            seen.add(target)


def validate_io_config(config: ModelConfig) -> None:
    """Load-time input/output checks (Triton's ValidateModelIOConfig): the
    message gets " for <model>" appended like Triton does."""
    try:
        _validate_io(config)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{exc.message} for {config.name}") from None
