"""Conversion of a normalized ModelConfig into the core's ModelSpec/SchedulerConfig.

``tritonx._native`` is imported lazily so that config parsing works without the
compiled core (tools, tests of the config rules).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tritonx.config._pb import (
    ModelConfig,
    ModelInput,
    ModelInstanceGroup,
    ModelOutput,
    ModelQueuePolicy,
    mc,
)
from tritonx.config.datatypes import wire_datatype
from tritonx.config.parse import read_text_file
from tritonx.config.sequence import sequence_batching_from_config

if TYPE_CHECKING:
    from tritonx import _native


def _tensor_spec(
    tensor: ModelInput | ModelOutput, optional: bool, labels: list[str] | None = None
) -> _native.TensorSpec:
    from tritonx import _native

    reshape = list(tensor.reshape.shape) if tensor.HasField("reshape") else None
    return _native.TensorSpec(
        name=tensor.name,
        datatype=wire_datatype(tensor.data_type),
        dims=list(tensor.dims),
        optional=optional,
        reshape=reshape,
        labels=labels or [],
        allow_ragged_batch=getattr(tensor, "allow_ragged_batch", False),
    )


def read_labels(output: ModelOutput, model_dir: Path | None) -> list[str]:
    """The lines of an output's ``label_filename`` (in the model directory), the
    classification extension's labels, read as Triton does (line by line, a final
    newline adds no label). A file that cannot be read fails the load."""
    if not output.label_filename or model_dir is None:
        return []
    path = Path(model_dir) / output.label_filename
    text = read_text_file(path).decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def model_spec_from_config(
    config: ModelConfig, version: int, model_dir: Path | None = None
) -> _native.ModelSpec:
    """The core's view of one model version: name, batching and tensors (with
    their classification labels when ``model_dir`` is given)."""
    from tritonx import _native

    return _native.ModelSpec(
        name=config.name,
        version=version,
        max_batch_size=config.max_batch_size,
        inputs=[_tensor_spec(i, i.optional) for i in config.input],
        outputs=[
            _tensor_spec(o, False, read_labels(o, model_dir)) for o in config.output
        ],
        decoupled=config.model_transaction_policy.decoupled,
        response_cache=config.response_cache.enable,
        batch_inputs=[
            (
                mc.BatchInput.Kind.Name(bi.kind),
                list(bi.target_name),
                wire_datatype(bi.data_type),
                bi.source_input[0],
            )
            for bi in config.batch_input
        ],
        batch_outputs=[
            (list(bo.target_name), bo.source_input[0]) for bo in config.batch_output
        ],
        state_outputs=[s.output_name for s in config.sequence_batching.state],
    )


def rate_limits_from_config(config: ModelConfig) -> list[_native.InstanceRateLimit]:
    """Each active instance's rate_limiter block and device, in the order the
    loader creates instances (per group: count x the group's GPUs, else device 0),
    passive groups left out as placement.core_executors leaves them out."""
    limits = []
    for group in config.instance_group:
        if group.passive:  # given no work: neither scheduled nor rate limited
            continue
        gpu = group.kind == mc.ModelInstanceGroup.KIND_GPU
        devices = list(group.gpus) if gpu else [0]
        for _ in range(group.count):
            for device in devices:
                limits.append(instance_rate_limit(group, device))
    return limits


def instance_rate_limit(
    group: ModelInstanceGroup, device: int
) -> _native.InstanceRateLimit:
    """The rate_limiter block of one instance of ``group`` on ``device``."""
    from tritonx import _native

    return _native.InstanceRateLimit(
        resources=[
            (r.name, r.count, getattr(r, "global"))
            for r in group.rate_limiter.resources
        ],
        priority=group.rate_limiter.priority,
        device=device,
    )


def _queue_policy(policy: ModelQueuePolicy) -> _native.QueuePolicy:
    from tritonx import _native

    return _native.QueuePolicy(
        timeout_action=mc.ModelQueuePolicy.TimeoutAction.Name(policy.timeout_action),
        default_timeout_us=policy.default_timeout_microseconds,
        allow_timeout_override=policy.allow_timeout_override,
        max_queue_size=policy.max_queue_size,
    )


def scheduler_config_from_config(
    config: ModelConfig, model_dir: Path | None = None
) -> _native.SchedulerConfig:
    """Dynamic batcher settings, the sequence batcher's (`model_dir` holds its
    initial_state files), or the default scheduler (one request per execution)
    when the config has neither block."""
    from tritonx import _native

    if config.HasField("sequence_batching"):
        scheduler = _native.SchedulerConfig()
        _native.set_sequence_batching(
            scheduler, sequence_batching_from_config(config, model_dir)
        )
        return scheduler
    if not config.HasField("dynamic_batching"):
        return _native.SchedulerConfig()
    db = config.dynamic_batching
    return _native.SchedulerConfig(
        dynamic_batching=True,
        preferred_batch_sizes=list(db.preferred_batch_size),
        max_queue_delay_us=db.max_queue_delay_microseconds,
        preserve_ordering=db.preserve_ordering,
        priority_levels=db.priority_levels,
        default_priority_level=db.default_priority_level,
        default_queue_policy=_queue_policy(db.default_queue_policy),
        priority_queue_policy={
            int(level): _queue_policy(policy)
            for level, policy in db.priority_queue_policy.items()
        },
    )


def ensemble_steps_from_config(
    config: ModelConfig,
) -> list[tuple[str, int, list[tuple[str, str]], list[tuple[str, str]], str]]:
    """The steps of an ensemble as ``_native.make_ensemble_model`` takes them:
    (model name, version (-1: latest), input map, output map, model namespace)."""
    return [
        (
            step.model_name,
            int(step.model_version),
            sorted(step.input_map.items()),
            sorted(step.output_map.items()),
            step.model_namespace,
        )
        for step in config.ensemble_scheduling.step
    ]
