"""Custom metrics (pb_utils.MetricFamily) of a model run in a stub process, mirrored
into the server's metric table so /metrics shows them as in in-process mode.

Stub side (``StubMetrics``, installed as ``pb.metrics.sync``): creating a family is
a round trip (the server's table says whether the name clashes, as in-process);
creating a metric and updating it cost the model nothing but a set insertion. The
stub flushes what changed as one ``("metrics", records)`` message before each of its
replies (and from a timer for updates made by the model's own threads):
- ``("family", fid, name, description, kind)``: a family created while the server
  was not listening (no round trip possible then);
- ``("metric", mid, fid, labels, buckets)``: a new series;
- ``("add", mid, delta, bucket deltas, sum delta, count delta)``: counters and
  histograms travel as deltas, so a restarted stub continues its predecessor's
  series instead of resetting it;
- ``("set", mid, value, seq)``: gauges travel as values; ``seq`` orders them across
  the two sockets.

Server side (``MetricsMirror``, one per StubInstance) applies them to real
``pb.metrics`` objects under the metric lock.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from tritonx.backends.pb import metrics
from tritonx.backends.pb.errors import TritonModelException

log = logging.getLogger("tritonx.backends.python")
Metric = metrics.Metric

_FLUSH_EVERY_S = 0.5


class StubMetrics:
    """The stub's half. ``ask`` makes a round trip to the server, ``send`` a one-way
    message on the control socket, ``send_side`` one on the stream socket,
    ``listening()`` says whether the server reads the control socket now.

    Thread-safety: creation and updates may come from any thread; ``flush`` holds
    ``_flush_lock`` from snapshot to send so records reach the server in order."""

    def __init__(
        self,
        ask: Callable[[tuple[Any, ...]], tuple[Any, ...]],
        send: Callable[[tuple[Any, ...]], None],
        send_side: Callable[[tuple[Any, ...]], None],
        listening: Callable[[], bool],
    ) -> None:
        self._ask = ask
        self._send = send
        self._send_side = send_side
        self._seq = itertools.count()
        self._listening = listening
        self._ids = itertools.count()
        self._family_ids: dict[int, int] = {}  # id(family object) -> fid
        self._metric_ids: dict[Metric, int] = {}
        self._sent: dict[Metric, tuple[float, list[int], float, int]] = {}
        self._created: list[tuple[Any, ...]] = []
        self._flush_lock = threading.Lock()
        self.dirty: set[Metric] = set()
        threading.Thread(target=self._timer, name="metrics-flush", daemon=True).start()

    def family_created(self, family: metrics.MetricFamily) -> None:
        fid = next(self._ids)
        record = ("family", fid, family.name, family.description, family.kind)
        self._family_ids[id(family)] = fid
        if not self._listening():
            with metrics._lock:
                self._created.append(record)
            return
        self.flush()  # families it names must exist on the server first
        error = self._ask(("metric_family", *record[1:]))[1]
        if error is not None:
            raise TritonModelException(error)

    def metric_created(self, metric: Metric) -> None:
        mid = next(self._ids)
        fid = self._family_ids[id(metric.family)]
        with metrics._lock:
            self._metric_ids[metric] = mid
            self._sent[metric] = (0.0, [0] * len(metric.bucket_counts), 0.0, 0)
            self._created.append(
                ("metric", mid, fid, dict(metric.labels), metric.buckets)
            )

    def flush(self) -> None:
        """Send what changed since the last flush (nothing when nothing did)."""
        if not self.dirty and not self._created:
            return
        with self._flush_lock:
            with metrics._lock:
                records, self._created = self._created, []
                dirty, self.dirty = self.dirty, set()
                for metric in dirty:
                    records.append(self._update(metric))
            if records:
                send = self._send if self._listening() else self._send_side
                with contextlib.suppress(Exception):  # server gone: nothing to tell
                    send(("metrics", records))

    def _update(self, metric: Metric) -> tuple[Any, ...]:
        mid = self._metric_ids[metric]
        if metric.family.kind == metrics.MetricFamily.GAUGE:
            return ("set", mid, metric._value, next(self._seq))
        value, buckets, total, count = self._sent[metric]
        now = (metric._value, list(metric.bucket_counts), metric.sum, metric.count)
        self._sent[metric] = now
        return (
            "add",
            mid,
            now[0] - value,
            [a - b for a, b in zip(now[1], buckets, strict=True)],
            now[2] - total,
            now[3] - count,
        )

    def _timer(self) -> None:
        event = threading.Event()
        while not event.wait(_FLUSH_EVERY_S):
            if self.dirty or self._created:
                self.flush()


class MetricsMirror:
    """The server's half for one stub instance: stub ids -> the server's families
    and metrics. Series of a dead stub are kept for its successor (same family,
    labels and buckets), so a restart neither resets nor duplicates them.
    Thread-safety: the readers of both sockets apply records, under ``_lock``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gauge_seq: dict[int, int] = {}
        self._families: dict[int, metrics.MetricFamily] = {}
        self._metrics: dict[int, metrics.Metric] = {}
        self._orphans: dict[tuple[Any, ...], list[metrics.Metric]] = {}

    def restarted(self) -> None:
        """A new stub: its ids start over; its metrics take over the old series."""
        with self._lock:
            for metric in self._metrics.values():
                self._orphans.setdefault(_key(metric), []).append(metric)
            self._families.clear()
            self._metrics.clear()
            self._gauge_seq.clear()

    def create_family(self, fid: int, name: str, description: str, kind: int) -> Any:
        """The error message of a clash, or None."""
        try:
            family = metrics.MetricFamily(name, description, kind)
        except TritonModelException as exc:
            return str(exc)
        with self._lock:
            self._families[fid] = family
        return None

    def apply(self, records: list[tuple[Any, ...]]) -> None:
        with self._lock:
            for record in records:
                try:
                    self._apply(record)
                except Exception as exc:  # a stub bug must not break the server
                    log.error("metric update from a stub dropped: %s", exc)

    def _apply(self, record: tuple[Any, ...]) -> None:
        kind = record[0]
        if kind == "family":
            try:
                family = metrics.MetricFamily(*record[2:])
            except TritonModelException as exc:
                log.error("%s", exc)
                return
            self._families[record[1]] = family
        elif kind == "metric":
            _kind, mid, fid, labels, buckets = record
            family = self._families[fid]
            key = (family.name, tuple(sorted(labels.items())), tuple(buckets or ()))
            orphans = self._orphans.get(key)
            if orphans:
                self._metrics[mid] = orphans.pop()
            else:
                self._metrics[mid] = family.Metric(labels, buckets)
        elif kind == "set":
            _kind, mid, value, seq = record
            if seq < self._gauge_seq.get(mid, -1):
                return  # a newer value came first, on the other socket
            self._gauge_seq[mid] = seq
            metric = self._metrics[mid]
            with metrics._lock:
                metric._value = float(value)
        elif kind == "add":
            _kind, mid, delta, buckets, total, count = record
            metric = self._metrics[mid]
            with metrics._lock:
                metric._value += delta
                for i, hits in enumerate(buckets):
                    metric.bucket_counts[i] += hits
                metric.sum += total
                metric.count += count


def _key(metric: metrics.Metric) -> tuple[Any, ...]:
    return (
        metric.family.name,
        tuple(sorted(metric.labels.items())),
        tuple(metric.buckets or ()),
    )
