"""Where a model's instances run: names, kinds, devices and CUDA streams.

Each KIND_GPU instance gets its device id and a stream of its own from the core's
``StreamPool`` (one pool per device per model version, created with the GIL
released). The pools live as long as the loaded version: they are dropped after
the backend unloaded its instances. Without a usable GPU validation has already
refused KIND_GPU (Triton's message), so every stream here is real.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from tritonx.backends.base import InstanceContext
from tritonx.config import ModelConfig
from tritonx.config._pb import mc
from tritonx.errors import UnavailableError
from tritonx.host_policy import BoundInstance, default_policy_name


def _kind_name(kind: int) -> str:
    return mc.ModelInstanceGroup.Kind.Name(kind).removeprefix("KIND_")


@dataclass(frozen=True)
class Placement:
    """One instance a config asks for: its name, kind, device, whether it is
    passive, its host policy's name, and its group (for rate limits and the
    signature an instance update matches instances by)."""

    name: str
    kind: str
    device: int
    passive: bool
    host_policy: str
    group: Any  # the ModelInstanceGroup it comes from

    @property
    def signature(self) -> tuple[bytes, int]:
        """Triton's instance signature: the group apart from its name and count,
        and the device. An instance update keeps an instance whose signature the
        new config still asks for, whatever its group is now called."""
        group = type(self.group)()
        group.CopyFrom(self.group)
        group.ClearField("name")
        group.ClearField("count")
        return group.SerializeToString(deterministic=True), self.device


def placements(config: ModelConfig) -> list[Placement]:
    """One per instance, in Triton's order: one instance per group count (per
    listed GPU for KIND_GPU), named "<group name>_<n>"."""
    out: list[Placement] = []
    for group in config.instance_group:
        kind = _kind_name(group.kind)
        devices = list(group.gpus) if kind == "GPU" else [0]
        for n in range(group.count):
            for device in devices:
                policy = group.host_policy or default_policy_name(kind, device)
                out.append(
                    Placement(
                        f"{group.name}_{n}", kind, device, group.passive, policy, group
                    )
                )
    return out


def instance_contexts(
    config: ModelConfig, wanted: list[Placement] | None = None, first_index: int = 0
) -> tuple[list[InstanceContext], list[Any]]:
    """The InstanceContexts of a model version's instances (``wanted``: those of
    an instance update, numbered from ``first_index``) and the stream pools
    backing them."""
    from tritonx import _native

    wanted = placements(config) if wanted is None else wanted
    per_device = Counter(p.device for p in wanted if p.kind == "GPU")
    pools = {dev: _native.StreamPool(n, dev) for dev, n in sorted(per_device.items())}
    taken: Counter[int] = Counter()
    contexts: list[InstanceContext] = []
    for index, place in enumerate(wanted, start=first_index):
        stream = 0
        if place.kind == "GPU":
            stream = pools[place.device].get(taken[place.device])
            taken[place.device] += 1
        contexts.append(
            InstanceContext(
                name=place.name,
                index=index,
                kind=place.kind,
                device_id=place.device,
                cuda_stream=stream,
                passive=place.passive,
                host_policy=place.host_policy,
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


def executors_of(instance: Any, ctx: InstanceContext, config: ModelConfig) -> list[Any]:
    """What the core runs for one instance: nothing when it is passive (Triton
    gives such an instance no work); else the instance once, or
    ``pipeline_depth`` times (one worker thread each) when it keeps that many
    batches in flight on its stream, as a pytorch GPU instance does. Not under
    sequence batching (sequence slots belong to instances) nor rate limiting
    (resources are counted per instance). An instance with a host binding runs
    through a ``BoundInstance``, which binds each of its worker threads."""
    if ctx.passive:
        return []
    bound = _bound(instance, ctx)
    if config.HasField("sequence_batching") or any(
        group.HasField("rate_limiter") for group in config.instance_group
    ):
        return [bound]
    return [bound] * max(1, int(getattr(instance, "pipeline_depth", 1)))


def core_executors(
    instances: list[Any], contexts: list[InstanceContext], config: ModelConfig
) -> list[Any]:
    """What the core runs for a model's instances (executors_of each, in order),
    or a NoActiveInstance when every one is passive."""
    out = [
        executor
        for instance, ctx in zip(instances, contexts, strict=True)
        for executor in executors_of(instance, ctx, config)
    ]
    return out or [NoActiveInstance(config.name)]


def executor_ids(
    instances: list[Any], contexts: list[InstanceContext], config: ModelConfig
) -> list[list[int]]:
    """Per instance, the numbers of its entries in what core_executors made of
    the same instances (none when passive: a NoActiveInstance stands for no
    instance)."""
    ids: list[list[int]] = []
    taken = 0
    for instance, ctx in zip(instances, contexts, strict=True):
        count = len(executors_of(instance, ctx, config))
        ids.append(list(range(taken, taken + count)))
        taken += count
    return ids


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
