"""pb_utils.MetricFamily: custom metrics defined by models, with Triton 2.51's rules.

A process-wide registry (``metric_families()``, rendered by /metrics) holds one
``Registered`` family per name and, in it, one ``Series`` per label set:
- families of one name share the registry entry; the first description stays and
  a later family of another kind is refused. Like prometheus-cpp's registry (which
  Triton never prunes) an entry outlives its family objects, so the kind stays
  taken and a family without series is simply not printed;
- ``family.Metric(labels)`` twice gives two objects over one series; a series lives
  while any Metric object counts it, and a family object keeps its Metric objects
  until it is itself deleted (as the Python backend's family holds its metrics);
- deleting a MetricFamily object drops its metrics' counts and leaves those Metric
  objects unusable: each operation then raises the lifetime error Triton's stub does.
Metric objects refer to their family only weakly, so ``del family`` deletes it.

Values are plain numbers guarded by ``_lock`` (reentrant: a family may be
finalized by garbage collection inside a locked section of the same thread). In a
stub process (EXECUTION_MODE "process") ``sync`` mirrors creations, updates and
deletions into the server's registry (backends/stub/metrics_sync.py).
"""

from __future__ import annotations

import bisect
import itertools
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol

from tritonx.backends.pb.errors import TritonModelException

_lock = threading.RLock()
_families: dict[str, Registered] = {}

# Triton's stub text for an operation on a Metric whose family object is gone.
DELETED_FAMILY = (
    "Invalid metric operation as the corresponding 'MetricFamily' has been deleted. "
    "The 'MetricFamily' object should be deleted AFTER its corresponding 'Metric' "
    "objects have been deleted."
)

LabelKey = tuple[tuple[str, str], ...]


class Series:
    """One labelled time series of a registered family; ``refs`` Metric objects."""

    __slots__ = (
        "__weakref__",
        "bucket_counts",
        "buckets",
        "count",
        "family",
        "key",
        "labels",
        "refs",
        "sum",
        "value",
    )

    def __init__(
        self,
        family: Registered,
        labels: dict[str, str],
        buckets: list[float] | None,
    ) -> None:
        self.family = family
        self.labels = labels
        self.key = label_key(labels)
        self.buckets = buckets  # None for counters and gauges; [] is allowed
        self.value = 0.0
        self.bucket_counts = [0] * (len(buckets) + 1) if buckets is not None else []
        self.sum = 0.0
        self.count = 0
        self.refs = 0


class Registered:
    """The registry's family of one name (shared by all MetricFamily objects of it)."""

    def __init__(self, name: str, description: str, kind: int) -> None:
        self.name = name
        self.description = description
        self.kind = kind
        self.series: dict[LabelKey, Series] = {}


def label_key(labels: Mapping[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


class MetricSync(Protocol):
    """Where a stub process sends its metrics (None in the server itself)."""

    dirty: set[Series]  # changed since the last flush; updated under _lock

    def family_created(self, family: MetricFamily) -> int: ...

    def metric_created(self, fid: int, metric: Metric) -> None: ...

    def family_deleted(self, fid: int, series: list[Series]) -> None: ...

    def gauge_was_set(self, series: Series, value: float) -> None: ...

    def value(self, series: Series) -> float: ...


sync: MetricSync | None = None


class Metric:
    """One Metric object over a (possibly shared) series of its family."""

    def __init__(
        self,
        family: MetricFamily,
        labels: Mapping[str, str],
        buckets: Sequence[float] | None,
    ) -> None:
        self._family = weakref.ref(family)
        self.kind = family.kind
        self.labels = dict(labels)
        self.buckets = [float(b) for b in buckets] if buckets is not None else None
        with _lock:
            entry = family._entry
            series = entry.series.get(label_key(self.labels))
            if series is None:  # prometheus-cpp keeps the first one's buckets too
                series = Series(entry, self.labels, self.buckets)
                entry.series[series.key] = series
            series.refs += 1
            self._series: Series | None = series

    def _live(self) -> Series:
        series = self._series
        if series is None:
            raise TritonModelException(DELETED_FAMILY)
        return series

    def _drop(self) -> None:
        """Its family object went away: stop counting the series (held by _lock)."""
        series, self._series = self._series, None
        if series is None:
            return
        series.refs -= 1
        if series.refs == 0 and series.family.series.get(series.key) is series:
            del series.family.series[series.key]

    def increment(self, value: float) -> None:
        with _lock:
            series = self._live()
            if self.kind == MetricFamily.HISTOGRAM:
                raise TritonModelException("increment() is not supported by histograms")
            if self.kind == MetricFamily.COUNTER and value < 0:
                raise TritonModelException(
                    "Failed to increment metric with negative value"
                )
            series.value += value
            if sync is not None:
                sync.dirty.add(series)

    def set(self, value: float) -> None:
        with _lock:
            series = self._live()
            if self.kind != MetricFamily.GAUGE:
                raise TritonModelException("set() is only supported by gauges")
            series.value = float(value)
            if sync is not None:
                sync.gauge_was_set(series, series.value)

    def observe(self, value: float) -> None:
        with _lock:
            series = self._live()
            if self.kind != MetricFamily.HISTOGRAM or series.buckets is None:
                raise TritonModelException("observe() is only supported by histograms")
            series.bucket_counts[bisect.bisect_left(series.buckets, value)] += 1
            series.sum += value
            series.count += 1
            if sync is not None:
                sync.dirty.add(series)

    def value(self) -> float:
        """The series' value: in a stub process the server's, which every instance's
        updates reach (Triton's value() asks its server too)."""
        with _lock:
            series = self._live()
            if self.kind == MetricFamily.HISTOGRAM:
                raise TritonModelException("value() is not supported by histograms")
            if sync is None:
                return series.value
        return sync.value(series)

    # A histogram's state, for tests and tools (zeros once the family is gone).
    @property
    def bucket_counts(self) -> list[int]:
        return list(self._series.bucket_counts) if self._series else []

    @property
    def count(self) -> int:
        return self._series.count if self._series else 0

    @property
    def sum(self) -> float:
        return self._series.sum if self._series else 0.0


def _check_buckets(buckets: Sequence[float]) -> None:
    # prometheus-cpp refuses bounds that are not strictly increasing; Triton's stub
    # passes that on as a TritonModelException.
    bounds = [float(b) for b in buckets]
    if any(low >= high for low, high in itertools.pairwise(bounds)):
        raise TritonModelException(
            f"histogram buckets must be strictly increasing, got {list(buckets)}"
        )


def _retire(metrics: list[Metric], fid: int | None) -> None:
    """A MetricFamily object is gone (``del`` or garbage collection)."""
    with _lock:
        if sync is not None and fid is not None:
            sync.family_deleted(fid, [m._series for m in metrics if m._series])
        for metric in metrics:
            metric._drop()
        metrics.clear()


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
        # the server's registry decides on clashes first (a round trip)
        fid = sync.family_created(self) if sync is not None else None
        with _lock:
            entry = _families.get(name)
            if entry is None:
                entry = _families[name] = Registered(name, description, kind)
            elif entry.kind != kind:
                raise TritonModelException(
                    f"metric family '{name}' already exists with a different kind"
                )
        self._entry = entry
        self._metrics: list[Metric] = []
        self.sync_id = fid
        # Not at interpreter exit: a stub has no server to tell by then.
        self._finalizer = weakref.finalize(self, _retire, self._metrics, fid)
        self._finalizer.atexit = False

    def Metric(
        self,
        labels: Mapping[str, str] | None = None,
        buckets: Sequence[float] | None = None,
    ) -> Metric:
        if self.kind == self.HISTOGRAM:
            if buckets is None:
                raise TritonModelException("histogram metrics need 'buckets'")
            _check_buckets(buckets)
        elif buckets is not None:
            raise TritonModelException(
                "'buckets' are only supported by histogram metrics"
            )
        if not self._finalizer.alive:
            raise TritonModelException(DELETED_FAMILY)
        metric = Metric(self, labels or {}, buckets)
        with _lock:
            self._metrics.append(metric)
        if sync is not None and self.sync_id is not None:
            sync.metric_created(self.sync_id, metric)
        return metric

    def delete(self) -> None:
        """Deletes this family object now (what ``del`` does once it is the last
        reference); for the server's mirror of a stub's family."""
        self._finalizer()


def metric_families() -> list[Registered]:
    """Every registered family, for the /metrics endpoint (print only its series)."""
    with _lock:
        return list(_families.values())


def family_series(family: Registered) -> list[Series]:
    with _lock:
        return list(family.series.values())


def find_series(name: str, key: LabelKey) -> Series | None:
    with _lock:
        entry = _families.get(name)
        return entry.series.get(key) if entry is not None else None


def snapshot(series: Series) -> tuple[float, list[int], float, int]:
    return series.value, list(series.bucket_counts), series.sum, series.count
