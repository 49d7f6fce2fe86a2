"""Defaults Triton fills into a parsed config (NormalizeModelConfig and the
instance-group normalization)."""

from __future__ import annotations

from collections.abc import Sequence

from tritonx.config._pb import ModelConfig, ModelInstanceGroup, mc

# Triton's default for sequence_batching.max_sequence_idle_microseconds.
SEQUENCE_IDLE_DEFAULT_US = 1_000_000

# Backends that get two CPU instances by default (Triton: TensorFlow, ONNX Runtime).
_TWO_CPU_INSTANCE_BACKENDS = ("tensorflow", "onnxruntime")


def normalize_model_config(config: ModelConfig) -> None:
    """Fill version policy, preferred batch sizes, sequence idle time and pinned
    memory defaults, in place (idempotent)."""
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1

    if config.HasField("dynamic_batching"):
        db = config.dynamic_batching
        if not db.preferred_batch_size and config.max_batch_size > 0:
            db.preferred_batch_size.append(config.max_batch_size)

    if config.HasField("sequence_batching"):
        sb = config.sequence_batching
        if sb.max_sequence_idle_microseconds == 0:
            sb.max_sequence_idle_microseconds = SEQUENCE_IDLE_DEFAULT_US
        fill_oldest = sb.HasField("oldest") and not sb.oldest.preferred_batch_size
        if fill_oldest and config.max_batch_size > 0:
            sb.oldest.preferred_batch_size.append(config.max_batch_size)

    # Ensembles have no instances, so no optimization block either.
    if not config.HasField("ensemble_scheduling"):
        opt = config.optimization
        if not opt.HasField("input_pinned_memory"):
            opt.input_pinned_memory.enable = True
        if not opt.HasField("output_pinned_memory"):
            opt.output_pinned_memory.enable = True


def _default_count(group: ModelInstanceGroup, backend: str) -> int:
    if (
        group.kind == mc.ModelInstanceGroup.KIND_CPU
        and backend in _TWO_CPU_INSTANCE_BACKENDS
    ):
        return 2
    return 1


def normalize_instance_groups(
    config: ModelConfig,
    *,
    gpu_ids: Sequence[int] = (),
    preferred_groups: Sequence[ModelInstanceGroup] = (),
) -> None:
    """Give every instance group a name, a resolved kind, a count and its GPUs.

    Without any group Triton creates one named after the model; unnamed groups are
    called "<model>_<index>". KIND_AUTO becomes KIND_GPU only when every listed GPU
    (or, with none listed, any GPU) exists, else KIND_CPU.
    """
    if config.HasField("ensemble_scheduling"):
        return
    supported = set(gpu_ids)

    if not config.instance_group:
        group = config.instance_group.add(name=config.name)
        for pg in preferred_groups:
            if pg.kind == mc.ModelInstanceGroup.KIND_GPU:
                if not supported:
                    continue
                group.gpus.extend(g for g in pg.gpus if g in supported)
            elif pg.kind == mc.ModelInstanceGroup.KIND_AUTO:
                group.gpus.extend(pg.gpus)
            group.kind = pg.kind
            group.count = pg.count
            break

    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.kind == mc.ModelInstanceGroup.KIND_AUTO:
            if not supported or any(g not in supported for g in group.gpus):
                group.kind = mc.ModelInstanceGroup.KIND_CPU
            else:
                group.kind = mc.ModelInstanceGroup.KIND_GPU
        for pg in preferred_groups:
            if pg.kind != group.kind:
                continue
            if (
                group.kind == mc.ModelInstanceGroup.KIND_GPU
                and not group.gpus
                and pg.gpus
            ):
                group.gpus.extend(g for g in pg.gpus if g in supported)
                if not group.gpus:
                    continue
            if group.count < 1 and pg.count > 0:
                group.count = pg.count
        if group.count < 1:
            group.count = _default_count(group, config.backend)
        if group.kind == mc.ModelInstanceGroup.KIND_GPU and not group.gpus:
            group.gpus.extend(sorted(supported))
