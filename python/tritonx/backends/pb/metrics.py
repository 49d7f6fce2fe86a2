"""pb_utils.MetricFamily: custom metrics defined by models.

Families live in a process-wide table that the /metrics endpoint can render with
``metric_families()``; values are plain Python numbers guarded by one lock. In a
stub process (EXECUTION_MODE "process") ``sync`` mirrors them into the server's
table (backends/stub/metrics_sync.py): creation asks the server, updates only mark
the metric for the next batched flush.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol

from tritonx.backends.pb.errors import TritonModelException

_lock = threading.Lock()
_families: dict[str, MetricFamily] = {}


class MetricSync(Protocol):
    """Where a stub process sends its metrics (None in the server itself)."""

    dirty: set[Metric]  # changed since the last flush; updated under _lock

    def family_created(self, family: MetricFamily) -> None: ...

    def metric_created(self, metric: Metric) -> None: ...


sync: MetricSync | None = None


class Metric:
    """One labelled series of a family."""

    def __init__(
        self,
        family: MetricFamily,
        labels: Mapping[str, str],
        buckets: Sequence[float] | None,
    ) -> None:
        self.family = family
        self.labels = dict(labels)
        self.buckets = sorted(buckets) if buckets is not None else None
        self._value = 0.0
        self.bucket_counts = [0] * (len(self.buckets) + 1) if self.buckets else []
        self.sum = 0.0
        self.count = 0
        if sync is not None:
            sync.metric_created(self)

    def increment(self, value: float) -> None:
        if self.family.kind == MetricFamily.HISTOGRAM:
            raise TritonModelException("increment() is not supported by histograms")
        if self.family.kind == MetricFamily.COUNTER and value < 0:
            raise TritonModelException("Failed to increment metric with negative value")
        with _lock:
            self._value += value
            if sync is not None:
                sync.dirty.add(self)

    def set(self, value: float) -> None:
        if self.family.kind != MetricFamily.GAUGE:
            raise TritonModelException("set() is only supported by gauges")
        with _lock:
            self._value = float(value)
            if sync is not None:
                sync.dirty.add(self)

    def observe(self, value: float) -> None:
        if self.family.kind != MetricFamily.HISTOGRAM or self.buckets is None:
            raise TritonModelException("observe() is only supported by histograms")
        with _lock:
            self.bucket_counts[bisect.bisect_left(self.buckets, value)] += 1
            self.sum += value
            self.count += 1
            if sync is not None:
                sync.dirty.add(self)

    def value(self) -> float:
        if self.family.kind == MetricFamily.HISTOGRAM:
            raise TritonModelException("value() is not supported by histograms")
        return self._value


class MetricFamily:
    """``MetricFamily(name, description, kind)`` with kind COUNTER, GAUGE or HISTOGRAM."""

    COUNTER: ClassVar[int] = 0
    GAUGE: ClassVar[int] = 1
    HISTOGRAM: ClassVar[int] = 2

    def __init__(self, name: str, description: str, kind: int) -> None:
        if kind not in (self.COUNTER, self.GAUGE, self.HISTOGRAM):
            raise TritonModelException(f"unknown metric kind {kind}")
        self.name = name
        self.description = description
        self.kind = kind
        self.metrics: list[Metric] = []
        if sync is not None:
            sync.family_created(self)  # the server's table decides on conflicts
        with _lock:
            existing = _families.get(name)
            if existing is not None and (
                existing.kind != kind or existing.description != description
            ):
                raise TritonModelException(
                    f"metric family '{name}' already exists with a different "
                    "kind or description"
                )
            _families[name] = existing or self
        if existing is not None:
            self.metrics = existing.metrics  # same series, like Triton's shared family

    def Metric(
        self,
        labels: Mapping[str, str] | None = None,
        buckets: Sequence[float] | None = None,
    ) -> Metric:
        if self.kind == self.HISTOGRAM and buckets is None:
            raise TritonModelException("histogram metrics need 'buckets'")
        metric = Metric(self, labels or {}, buckets)
        with _lock:
            self.metrics.append(metric)
        return metric


def metric_families() -> list[MetricFamily]:
    """Every family models have defined, for the /metrics endpoint."""
    with _lock:
        return list(_families.values())
