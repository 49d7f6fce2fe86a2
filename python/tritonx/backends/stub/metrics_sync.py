"""Custom metrics (pb_utils.MetricFamily) of a model run in a stub process, mirrored
into the server's registry so /metrics shows them as in in-process mode.

Stub side (``StubMetrics``, installed as ``pb.metrics.sync``): creating a family is
a round trip (the server's registry says whether the name is taken by another
kind, as in-process); creating a metric, updating it and deleting a family cost the
model a list append or a set insertion. What changed is flushed as one
``("metrics", records)`` message before each reply of the stub, from a timer (for
updates made by the model's own threads) and whenever the server asks, which it
does before rendering /metrics (``flush_stubs``): a scrape therefore sees every
operation a stub made before the scrape began, even one from inside execute, with
no per-update round trip. Records, applied in order:
- ``("family", fid, name, description, kind)``: a family object created while the
  server was not listening (no round trip possible then);
- ``("metric", fid, labels, buckets)``: a Metric object of family ``fid``;
- ``("drop", fid)``: family object ``fid`` was deleted (its metrics with it);
- ``("add", name, labels, delta, bucket deltas, sum delta, count delta)``: counters
  and histograms travel as deltas, so a restarted stub continues its predecessor's
  series instead of resetting it;
- ``("gauge", name, labels, set_to, delta, seq)``: a gauge's last ``set()`` since
  the previous record (None: none), then what was added to it since, so two
  instances' increments of a shared gauge add up as in Triton; ``seq`` orders sets
  across the two sockets (an older set arriving second is dropped, its delta kept).

``Metric.value()`` is a round trip: pending records are flushed and the server
answers its series' value, which every instance's updates reach.

Server side (``MetricsMirror``, one per StubInstance) keeps one real family object
per stub family object, so series are shared and counted as for in-process models.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from tritonx import logging_setup
from tritonx.backends.pb import metrics
from tritonx.backends.pb.errors import TritonModelException
from tritonx.backends.stub.channel import Channel, ChannelClosed

log = logging.getLogger("tritonx.backends.python")
Series = metrics.Series

_FLUSH_EVERY_S = 0.5
# How long a scrape waits for the stubs' pending updates (a stub stuck holding
# the GIL must not stall /metrics for good).
SCRAPE_FLUSH_TIMEOUT_S = 2.0
# How long a log level change waits for the stubs to take it, for the same reason.
LOG_LEVEL_TIMEOUT_S = 2.0


class StubMetrics:
    """The stub's half. ``ask`` makes a round trip to the server, ``send`` a message
    on the control socket that is applied before it returns (or a one-way one),
    ``send_side`` one on the stream socket, ``listening()`` says whether the server
    reads the control socket now.

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
        # what the server has of each series (deltas are sent from it)
        self._sent: weakref.WeakKeyDictionary[
            Series, tuple[float, list[int], float, int]
        ] = weakref.WeakKeyDictionary()
        self._created: list[tuple[Any, ...]] = []
        # gauges set since the last flush: the value set
        self._gauge_set: dict[Series, float] = {}
        self._flush_lock = threading.Lock()
        self.dirty: set[Series] = set()
        threading.Thread(target=self._timer, name="metrics-flush", daemon=True).start()

    def family_created(self, family: metrics.MetricFamily) -> int:
        fid = next(self._ids)
        record = ("family", fid, family.name, family.description, family.kind)
        if not self._listening():
            with metrics._lock:
                self._created.append(record)
            return fid
        self.flush()  # a deleted family of that name goes first
        error = self._ask(("metric_family", *record[1:]))[1]
        if error is not None:
            raise TritonModelException(error)
        return fid

    def metric_created(self, fid: int, metric: metrics.Metric) -> None:
        with metrics._lock:
            series = metric._series
            if series is not None and series not in self._sent:
                self._sent[series] = metrics.snapshot(series)
            self._created.append(("metric", fid, dict(metric.labels), metric.buckets))

    def family_deleted(self, fid: int, series: list[Series]) -> None:
        """Called under the metric lock: updates of its series go before the drop."""
        for one in series:
            if one in self.dirty:
                self.dirty.discard(one)
                self._created.append(self._update(one))
        self._created.append(("drop", fid))

    def gauge_was_set(self, series: Series, value: float) -> None:
        """Called under the metric lock."""
        self._gauge_set[series] = value
        self.dirty.add(series)

    def value(self, series: Series) -> float:
        """The server's value of ``series``; the stub's own when the server cannot
        be asked now or has none."""
        if not self._listening():
            with metrics._lock:
                return series.value
        self.flush()
        value = self._ask(("metric_value", series.family.name, series.key))[1]
        if value is None:
            with metrics._lock:
                return series.value
        return float(value)

    def flush(self) -> None:
        """Send what changed since the last flush (nothing when nothing did)."""
        if not self.dirty and not self._created:
            return
        with self._flush_lock:
            with metrics._lock:
                records, self._created = self._created, []
                dirty, self.dirty = self.dirty, set()
                for series in dirty:
                    records.append(self._update(series))
            if records:
                send = self._send if self._listening() else self._send_side
                with contextlib.suppress(Exception):  # server gone: nothing to tell
                    send(("metrics", records))

    def _update(self, series: Series) -> tuple[Any, ...]:
        name = series.family.name
        zero = (0.0, [0] * len(series.bucket_counts), 0.0, 0)
        value, buckets, total, count = self._sent.get(series, zero)
        now = metrics.snapshot(series)
        self._sent[series] = now
        if series.family.kind == metrics.MetricFamily.GAUGE:
            set_to = self._gauge_set.pop(series, None)
            delta = now[0] - (value if set_to is None else set_to)
            return ("gauge", name, series.key, set_to, delta, next(self._seq))
        return (
            "add",
            name,
            series.key,
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

    def serve_flush_requests(self, channel: Channel) -> None:
        """Answers the server's ("flush", n) with ("flushed", n) once everything
        made before is applied on its side (a thread of its own: the model's main
        thread may be inside execute, scraping /metrics itself). The server's
        ("log_level", level, n) sets this process' log level, so records the
        server would drop are not sent at all, and is answered ("flushed", n) too:
        the server's level change returns only once the stub logs by it."""
        while True:
            try:
                msg, _fds = channel.recv()
                if msg[0] == "log_level":
                    logging.getLogger().setLevel(int(msg[1]))
                else:
                    self.flush()
                channel.send(("flushed", msg[-1]))
            except (ChannelClosed, OSError):
                return


class FlushAsker:
    """The server's end of a stub's flush socket. ``begin`` asks for a flush (or,
    given a log level, for that level to be set), ``wait`` waits for that answer
    or an earlier deadline (several callers may ask at once). The stub answers in
    the order asked, so an answer also answers every earlier question."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._asked = 0
        self._answered = 0

    def begin(self, log_level: int | None = None) -> int | None:
        with self._send_lock:
            self._asked += 1
            if log_level is None:
                msg: tuple[Any, ...] = ("flush", self._asked)
            else:
                msg = ("log_level", log_level, self._asked)
            try:
                self.channel.send(msg)
            except (ChannelClosed, OSError):
                return None
            return self._asked

    def wait(self, token: int, deadline: float) -> None:
        if not self._recv_lock.acquire(timeout=max(deadline - time.monotonic(), 0)):
            return
        try:
            while self._answered < token:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    msg, _fds = self.channel.recv(left)
                except (TimeoutError, ChannelClosed, OSError):
                    return
                self._answered = max(self._answered, int(msg[1]))
        finally:
            self._recv_lock.release()


_mirrors: weakref.WeakSet[MetricsMirror] = weakref.WeakSet()


def flush_stubs(timeout: float = SCRAPE_FLUSH_TIMEOUT_S) -> None:
    """Every live stub's pending metric records, applied here (for /metrics)."""
    asked = []
    for mirror in list(_mirrors):
        asker = mirror.flusher
        if asker is not None:
            token = asker.begin()
            if token is not None:
                asked.append((asker, token))
    deadline = time.monotonic() + timeout
    for asker, token in asked:
        asker.wait(token, deadline)


def send_log_level(level: int, timeout: float = LOG_LEVEL_TIMEOUT_S) -> None:
    """Every live stub's log level follows the server's (``/v2/logging``). Returns
    once each has taken it (or the timeout passed), so a request sent after the
    change is logged by the new level, as Triton's server-side filter does."""
    asked = []
    for mirror in list(_mirrors):
        asker = mirror.flusher
        if asker is not None:
            token = asker.begin(log_level=level)
            if token is not None:
                asked.append((asker, token))
    deadline = time.monotonic() + timeout
    for asker, token in asked:
        asker.wait(token, deadline)


logging_setup.add_level_listener(send_log_level)


def have_stubs() -> bool:
    return any(mirror.flusher is not None for mirror in list(_mirrors))


class MetricsMirror:
    """The server's half for one stub instance: stub family ids -> the server's
    family objects. A dead stub's families are kept (retired), so its successor
    continues their series rather than resetting them.
    Thread-safety: the readers of both sockets apply records, under ``_lock``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gauge_seq: dict[tuple[str, metrics.LabelKey], int] = {}
        self._families: dict[int, metrics.MetricFamily] = {}
        self._retired: list[metrics.MetricFamily] = []
        self.flusher: FlushAsker | None = None  # set while a stub is up
        _mirrors.add(self)

    def restarted(self) -> None:
        """A new stub: its ids start over; its metrics take over the old series."""
        with self._lock:
            self._retired.extend(self._families.values())
            self._families.clear()
            self._gauge_seq.clear()

    def _release_retired(self, series: Series | None) -> None:
        """A new stub's metric now counts ``series``: the retired families' metrics
        over it are let go, and a retired family left with none is deleted, so
        restarts do not pile up family objects (under ``_lock``)."""
        if series is None or not self._retired:
            return
        kept = []
        for family in self._retired:
            with metrics._lock:
                for metric in [m for m in family._metrics if m._series is series]:
                    metric._drop()
                    family._metrics.remove(metric)
                emptied = not family._metrics
            if emptied:
                family.delete()
            else:
                kept.append(family)
        self._retired = kept

    def create_family(self, fid: int, name: str, description: str, kind: int) -> Any:
        """The error message of a clash, or None."""
        try:
            family = metrics.MetricFamily(name, description, kind)
        except TritonModelException as exc:
            return str(exc)
        with self._lock:
            self._families[fid] = family
        return None

    def value_of(self, name: str, key: Any) -> float | None:
        """What ``Metric.value()`` of a stub reads (None: no such series)."""
        series = metrics.find_series(name, _key(key))
        if series is None:
            return None
        with metrics._lock:
            return series.value

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
            _kind, fid, labels, buckets = record
            taken_over = self._families[fid].Metric(labels, buckets)._series
            self._release_retired(taken_over)
        elif kind == "drop":
            dropped = self._families.pop(record[1], None)
            if dropped is not None:
                dropped.delete()
        elif kind == "gauge":
            _kind, name, key, set_to, delta, seq = record
            ident = (name, _key(key))
            # an older set that came second, on the other socket, is dropped
            newest = seq >= self._gauge_seq.get(ident, -1)
            if newest:
                self._gauge_seq[ident] = seq
            series = metrics.find_series(*ident)
            if series is not None:  # else its family was deleted meanwhile
                with metrics._lock:
                    if set_to is not None and newest:
                        series.value = float(set_to)
                    series.value += delta
        elif kind == "add":
            _kind, name, key, delta, buckets, total, count = record
            series = metrics.find_series(name, _key(key))
            if series is None:
                return
            with metrics._lock:
                series.value += delta
                for i, hits in enumerate(buckets):
                    series.bucket_counts[i] += hits
                series.sum += total
                series.count += count


def _key(key: Any) -> metrics.LabelKey:
    return tuple((str(k), str(v)) for k, v in key)
