"""Where a model's instances run: names, kinds, devices and CUDA streams.

Each KIND_GPU instance gets its device id and a stream of its own from the core's
``StreamPool`` (one pool per device per model version, created with the GIL
released). The pools live as long as the loaded version: they are dropped after
the backend unloaded its instances. Without a usable GPU validation has already
refused KIND_GPU (Triton's message), so every stream here is real.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tritonx.backends.base import InstanceContext
from tritonx.config import ModelConfig
from tritonx.config._pb import mc
from tritonx.errors import UnavailableError
from tritonx.host_policy import BoundInstance, default_policy_name


def _kind_name(kind: int) -> str:
    return mc.ModelInstanceGroup.Kind.Name(kind).removeprefix("KIND_")


def _placements(config: ModelConfig) -> list[tuple[str, str, int, bool, str]]:
    """(instance name, kind, device, passive, host policy name) per instance, in
    Triton's order: one instance per group count (per listed GPU for KIND_GPU),
    named "<group name>_<n>"."""
    out: list[tuple[str, str, int, bool, str]] = []
    for group in config.instance_group:
        kind = _kind_name(group.kind)
        devices = list(group.gpus) if kind == "GPU" else [0]
        for n in range(group.count):
            for device in devices:
                policy = group.host_policy or default_policy_name(kind, device)
                out.append((f"{group.name}_{n}", kind, device, group.passive, policy))
    return out


def instance_contexts(config: ModelConfig) -> tuple[list[InstanceContext], list[Any]]:
    """The InstanceContexts of a model version and the stream pools backing them."""
    from tritonx import _native

    placements = _placements(config)
    per_device = Counter(p[2] for p in placements if p[1] == "GPU")
    pools = {dev: _native.StreamPool(n, dev) for dev, n in sorted(per_device.items())}
    taken: Counter[int] = Counter()
    contexts: list[InstanceContext] = []
    for index, (name, kind, device, passive, policy) in enumerate(placements):
        stream = 0
        if kind == "GPU":
            stream = pools[device].get(taken[device])
            taken[device] += 1
        contexts.append(
            InstanceContext(
                name=name,
                index=index,
                kind=kind,
                device_id=device,
                cuda_stream=stream,
                passive=passive,
                host_policy=policy,
            )
        )
    return contexts, list(pools.values())


class NoActiveInstance:
    """What the core runs for a model whose every instance is passive: each request
    fails at once with UNAVAILABLE. (Triton 2.51 loads such a model and crashes on
    its first request; a request that could only wait for ever is refused instead.)
    Stateless; safe on any worker thread."""

    gather_inputs = False

    def __init__(self, model_name: str) -> None:
        self._message = (
            f"model '{model_name}' has no active instance to run requests: "
            "every instance group is passive"
        )

    def execute(self, requests: list[Any]) -> list[BaseException]:
        return [UnavailableError(self._message) for _ in requests]

    def execute_batch(self, inputs: dict[str, Any], requests: list[Any]) -> Any:
        raise UnavailableError(self._message)


def core_executors(
    instances: list[Any], contexts: list[InstanceContext], config: ModelConfig
) -> list[Any]:
    """What the core runs: each active (non-passive) instance once, or
    ``pipeline_depth`` times (one worker thread each) when it keeps that many
    batches in flight on its stream, as a pytorch GPU instance does. Not under
    sequence batching (sequence slots belong to instances) nor rate limiting
    (resources are counted per instance). An instance with a host binding runs
    through a ``BoundInstance``, which binds each of its worker threads."""
    active = [
        (instance, ctx)
        for instance, ctx in zip(instances, contexts, strict=True)
        if not ctx.passive
    ]
    if not active:
        return [NoActiveInstance(config.name)]
    if config.HasField("sequence_batching") or any(
        group.HasField("rate_limiter") for group in config.instance_group
    ):
        return [_bound(instance, ctx) for instance, ctx in active]
    out: list[Any] = []
    for instance, ctx in active:
        depth = max(1, int(getattr(instance, "pipeline_depth", 1)))
        out += [_bound(instance, ctx)] * depth
    return out


def warmup_targets(
    executors: list[Any], contexts: list[InstanceContext]
) -> list[tuple[int, str]]:
    """The instances warmup runs on (Triton warms each active one up), as (index
    of its first entry in ``executors``, its name): ``executors`` is what
    core_executors made of ``contexts``' instances, in their order, an instance
    repeated for its pipeline depth."""
    active = [ctx for ctx in contexts if not ctx.passive]
    if not active:
        return []
    targets: list[tuple[int, str]] = []
    previous: Any = None
    for index, executor in enumerate(executors):
        if executor is previous:
            continue
        previous = executor
        targets.append((index, active[len(targets)].name))
    return targets


def _bound(instance: Any, ctx: InstanceContext) -> Any:
    """The instance, or a BoundInstance over it when its host policy binds it. A
    C++ executor (python stub) is left as it is: it relays to a stub process that
    was bound at its spawn, and a Python wrapper would hide it from the core."""
    if ctx.host_binding is None or hasattr(instance, "native_executor"):
        return instance
    return BoundInstance(instance, ctx.host_binding)
