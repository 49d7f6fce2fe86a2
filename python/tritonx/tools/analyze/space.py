"""Candidate configurations: the search space and how a candidate edits a config.

A candidate fixes the settings the search varies (instance kind and count,
max_batch_size, dynamic batching with its preferred sizes and queue delay); every
other field of the model's own config is kept. The model's config as given is
always a candidate too ("default"), as in Model Analyzer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf import text_format

from tritonx.config._pb import ModelConfig, mc


@dataclass(frozen=True)
class Candidate:
    kind: str = "CPU"  # "CPU" or "GPU"
    instances: int = 1
    max_batch_size: int = 0  # 0: the model does not batch
    dynamic: bool = False
    preferred: tuple[int, ...] = ()
    delay_us: int = 0
    default: bool = False  # the model's config as given

    @property
    def key(self) -> str:
        """A short stable id, also the variant model's name suffix."""
        if self.default:
            return "default"
        parts = [f"{self.kind.lower()}{self.instances}"]
        if self.max_batch_size:
            parts.append(f"b{self.max_batch_size}")
        if self.dynamic:
            parts.append("dyn")
            if self.preferred:
                parts.append("p" + "-".join(str(p) for p in self.preferred))
            if self.delay_us:
                parts.append(f"d{self.delay_us}")
        return "_".join(parts)

    def describe(self) -> str:
        if self.default:
            return "the model's own config"
        text = f"{self.instances} x KIND_{self.kind}"
        if self.max_batch_size:
            text += f", max_batch_size {self.max_batch_size}"
        if self.dynamic:
            text += ", dynamic batching"
            if self.preferred:
                text += f" (preferred {list(self.preferred)}"
                text += f", delay {self.delay_us} us)" if self.delay_us else ")"
            elif self.delay_us:
                text += f" (delay {self.delay_us} us)"
        elif self.max_batch_size:
            text += ", no dynamic batching"
        return text

    def with_delay(self, delay_us: int) -> Candidate:
        return Candidate(
            self.kind,
            self.instances,
            self.max_batch_size,
            True,
            self.preferred,
            delay_us,
        )


@dataclass
class SpaceOptions:
    """What the command line lets the user sweep."""

    instance_counts: list[int]
    max_batch_sizes: list[int]  # empty: powers of two up to the model's, at least 8
    batching: list[str]  # "off" / "on"
    preferred: list[str]  # "none" / "max" / "half"
    delays_us: list[int]
    kinds: list[str]  # "CPU" and, where GPUs exist, "GPU"


@dataclass
class Batcher:
    """One point on the batching axis: off, or on with preferred sizes and delay."""

    dynamic: bool
    preferred: str = "none"
    delay_us: int = 0


def searchable(config: ModelConfig) -> tuple[bool, bool]:
    """(instances may vary, batching may vary) for this model's config."""
    if config.platform == "ensemble" or config.HasField("ensemble_scheduling"):
        return False, False
    batching = config.max_batch_size > 0 and not config.HasField("sequence_batching")
    return True, batching


def batch_sizes(config: ModelConfig, options: SpaceOptions) -> list[int]:
    if options.max_batch_sizes:
        return sorted(set(options.max_batch_sizes))
    top = max(8, config.max_batch_size)
    return [1 << i for i in range(top.bit_length()) if 1 << i <= top]


def batchers(options: SpaceOptions) -> list[Batcher]:
    out: list[Batcher] = []
    if "off" in options.batching:
        out.append(Batcher(False))
    if "on" in options.batching:
        for preferred, delay in itertools.product(options.preferred, options.delays_us):
            out.append(Batcher(True, preferred, delay))
    return out


def preferred_sizes(rule: str, max_batch_size: int) -> tuple[int, ...]:
    if rule == "max" and max_batch_size > 1:
        return (max_batch_size,)
    if rule == "half" and max_batch_size > 2:
        return (max_batch_size // 2,)
    return ()


def make_candidate(
    kind: str, instances: int, max_batch_size: int, batcher: Batcher | None
) -> Candidate:
    if batcher is None or not batcher.dynamic:
        return Candidate(kind, instances, max_batch_size)
    return Candidate(
        kind,
        instances,
        max_batch_size,
        True,
        preferred_sizes(batcher.preferred, max_batch_size),
        batcher.delay_us,
    )


def axes(
    config: ModelConfig, options: SpaceOptions
) -> tuple[list[str], list[int], list[int], list[Batcher | None]]:
    """The search axes for this model (a fixed axis has one value)."""
    vary_instances, vary_batching = searchable(config)
    counts = options.instance_counts if vary_instances else [1]
    kinds = options.kinds if vary_instances else ["CPU"]
    if not vary_batching:
        return kinds, counts, [config.max_batch_size], [None]
    return kinds, counts, batch_sizes(config, options), list(batchers(options))


def brute_candidates(config: ModelConfig, options: SpaceOptions) -> Iterator[Candidate]:
    """Every combination, in the order Model Analyzer's brute search walks them
    (batch size innermost, so a sweep of it can stop when throughput stops growing)."""
    kinds, counts, sizes, batcher_axis = axes(config, options)
    seen: set[str] = set()
    for kind, count, batcher in itertools.product(kinds, counts, batcher_axis):
        for size in sizes:
            candidate = make_candidate(kind, count, size, batcher)
            if candidate.key not in seen:
                seen.add(candidate.key)
                yield candidate


def candidate_config(base: ModelConfig, candidate: Candidate, name: str) -> ModelConfig:
    """`base` with the candidate's settings, renamed to `name`."""
    config = ModelConfig()
    config.CopyFrom(base)
    config.name = name
    if candidate.default:
        return config
    if config.platform != "ensemble":
        del config.instance_group[:]
        group = config.instance_group.add()
        group.count = candidate.instances
        group.kind = mc.ModelInstanceGroup.Kind.Value(f"KIND_{candidate.kind}")
    if base.max_batch_size > 0 and candidate.max_batch_size:
        config.max_batch_size = candidate.max_batch_size
    if config.HasField("sequence_batching") or base.max_batch_size == 0:
        return config
    if candidate.dynamic:
        batching = config.dynamic_batching
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(candidate.preferred)
        batching.max_queue_delay_microseconds = candidate.delay_us
        batching.SetInParent()
    else:
        config.ClearField("dynamic_batching")
    return config


def config_text(config: ModelConfig) -> str:
    return text_format.MessageToString(config)
