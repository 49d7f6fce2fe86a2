"""The measurement loop of one load step, as perf_analyzer's: windows of
--measurement-interval ms (or of --measurement-request-count requests), until the
last three agree within --stability-percentage on throughput and latency, or
--max-trials windows were measured. With --request-count the step is one window of
exactly that many requests (the load sends no more). The load runs in C++ the whole
time; between windows this side only reads the finished requests and the server's
statistics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tritonx import _native
from tritonx.tools.perf.errors import PerfError
from tritonx.tools.perf.server_api import ServerApi, StatsSnapshot

Columns = dict[str, np.ndarray[Any, Any]]
STABLE_WINDOWS = 3


@dataclass
class MeasureOptions:
    interval_ms: int = 5000
    count_windows: bool = False
    request_count: int = 50
    stability_pct: float = 10.0
    max_trials: int = 10
    percentile: int = -1  # -1: stabilize on the average latency
    batch: int = 1
    total_requests: int = 0  # --request-count: one window of this many requests


# A --request-count window with no request finishing for this long has stalled.
STALL_NS = 60_000_000_000


@dataclass
class Window:
    start_ns: int
    end_ns: int
    records: Columns  # requests that started and finished inside the window
    stats: StatsSnapshot | None

    @property
    def seconds(self) -> float:
        return max(self.end_ns - self.start_ns, 1) / 1e9

    def count(self) -> int:
        return int(self.records["ok"].sum())

    def throughput(self, batch: int) -> float:
        return self.count() * batch / self.seconds

    def latency_us(self, percentile: int) -> float:
        lat = latencies_us(self.records)
        if lat.size == 0:
            return 0.0
        return float(np.mean(lat) if percentile < 0 else np.percentile(lat, percentile))


@dataclass
class StepResult:
    mode: str  # "concurrency" | "request_rate"
    value: float
    windows: list[Window]  # the ones the result is made of (the last three)
    all_windows: list[Window] = field(default_factory=list)
    stable: bool = True
    delayed: int = 0

    def merged(self) -> Columns:
        return concat([w.records for w in self.windows])

    def stats(self) -> StatsSnapshot | None:
        total: StatsSnapshot | None = None
        for window in self.windows:
            if window.stats is None:
                return None
            total = window.stats if total is None else total.plus(window.stats)
        return total

    def seconds(self) -> float:
        return sum(w.seconds for w in self.windows)


def concat(chunks: list[Columns]) -> Columns:
    chunks = [c for c in chunks if c and len(c["start_ns"])]
    if not chunks:
        return empty_columns()
    out: Columns = {}
    for key in (
        "start_ns",
        "end_ns",
        "send_ns",
        "recv_ns",
        "sequence_id",
        "ok",
        "response_count",
        "first_response_ns",
    ):
        out[key] = np.concatenate([c[key] for c in chunks])
    # Per-request response times: rebuild the offsets over the concatenation.
    out["response_ns"] = np.concatenate([c["response_ns"] for c in chunks])
    out["response_offsets"] = np.concatenate(
        [[0], np.cumsum(out["response_count"])]
    ).astype(np.int64)
    return out


def empty_columns() -> Columns:
    ints = np.zeros(0, dtype=np.int64)
    return {
        "start_ns": ints,
        "end_ns": ints,
        "send_ns": ints,
        "recv_ns": ints,
        "sequence_id": np.zeros(0, dtype=np.uint64),
        "ok": np.zeros(0, dtype=bool),
        "response_count": ints,
        "first_response_ns": ints,
        "response_ns": ints,
        "response_offsets": np.zeros(1, dtype=np.int64),
    }


def select(columns: Columns, mask: np.ndarray[Any, Any]) -> Columns:
    out = {
        k: v[mask]
        for k, v in columns.items()
        if k not in ("response_ns", "response_offsets")
    }
    # Each request's response times follow each other: keep those of the kept ones.
    keep = np.repeat(mask, columns["response_count"])
    out["response_ns"] = columns["response_ns"][keep]
    out["response_offsets"] = np.concatenate(
        [[0], np.cumsum(out["response_count"])]
    ).astype(np.int64)
    return out


def latencies_us(columns: Columns) -> np.ndarray[Any, Any]:
    ok = columns["ok"]
    return (columns["end_ns"][ok] - columns["start_ns"][ok]) / 1000.0


def _stable(windows: list[Window], options: MeasureOptions) -> bool:
    if len(windows) < STABLE_WINDOWS:
        return False
    last = windows[-STABLE_WINDOWS:]
    band = options.stability_pct / 100.0
    for values in (
        [w.throughput(options.batch) for w in last],
        [w.latency_us(options.percentile) for w in last],
    ):
        mean = sum(values) / len(values)
        if mean <= 0 or any(abs(v - mean) > band * mean for v in values):
            return False
    return True


ProgressFn = Callable[[int, float, int], None]  # (window index, fraction, requests)


def run_step(
    load: Any,
    api: ServerApi | None,
    model: str,
    version: str,
    options: MeasureOptions,
    mode: str,
    value: float,
    progress: ProgressFn | None = None,
    stats_before: StatsSnapshot | None = None,
    begin_ns: int | None = None,
) -> StepResult:
    """Measures windows on a running `load` (a started _native.PerfLoad). With
    options.total_requests, `begin_ns` (taken before the load started) opens the one
    window, and `stats_before` are the statistics read then."""
    if options.total_requests:
        return _run_counted(
            load,
            api,
            model,
            version,
            options,
            mode,
            value,
            progress,
            stats_before,
            begin_ns,
        )
    windows: list[Window] = []
    pending: list[Columns] = []
    start = _native.perf_now_ns()
    load.drain()  # what finished before the first window belongs to no window
    stats_before = api.statistics(model, version) if api else None
    for trial in range(options.max_trials):
        window_start = start
        chunks = pending
        pending = []
        interval_ns = options.interval_ms * 1_000_000
        completed_before = int(load.completed)
        # A count window that cannot fill (a stalled server) still ends, after a
        # generous multiple of the interval.
        deadline = window_start + (
            max(interval_ns * 20, 60_000_000_000)
            if options.count_windows
            else interval_ns
        )
        # Between windows nothing is read but a counter: the client threads and the
        # server keep the CPUs (a time window with no display is one sleep).
        if options.count_windows:
            pause = 0.01
        else:
            pause = 0.25 if progress else options.interval_ms / 1000
        while True:
            now = _native.perf_now_ns()
            done = int(load.completed) - completed_before
            if now >= deadline or load.first_error():
                break
            if options.count_windows and done >= options.request_count:
                break
            if progress:
                fraction = (
                    done / options.request_count
                    if options.count_windows
                    else (now - window_start) / interval_ns
                )
                progress(trial, min(fraction, 1.0), done)
            time.sleep(min(pause, max(deadline - now, 0) / 1e9))
        end = _native.perf_now_ns()
        stats_after = api.statistics(model, version) if api else None
        everything = concat([*chunks, load.drain()])
        inside = (everything["start_ns"] >= window_start) & (
            everything["end_ns"] <= end
        )
        later = everything["end_ns"] > end
        if np.any(later):
            pending = [select(everything, later)]
        records = select(everything, inside)
        failed = int(np.count_nonzero(~everything["ok"]))
        if failed:
            error = load.first_error() or "unknown error"
            raise PerfError(f"{failed} request(s) failed: {error}")
        delta = (
            stats_after.minus(stats_before)
            if stats_after is not None and stats_before is not None
            else None
        )
        stats_before = stats_after
        windows.append(Window(window_start, end, records, delta))
        start = end
        if _stable(windows, options):
            return StepResult(
                mode, value, windows[-STABLE_WINDOWS:], windows, True, int(load.delayed)
            )
    return StepResult(
        mode, value, windows[-STABLE_WINDOWS:], windows, False, int(load.delayed)
    )


def _run_counted(
    load: Any,
    api: ServerApi | None,
    model: str,
    version: str,
    options: MeasureOptions,
    mode: str,
    value: float,
    progress: ProgressFn | None,
    stats_before: StatsSnapshot | None,
    begin_ns: int | None,
) -> StepResult:
    """--request-count: every request the load sends (exactly that many) is one
    window, from before the first was sent to the last answer; no stability loop."""
    start = begin_ns if begin_ns is not None else _native.perf_now_ns()
    total = options.total_requests
    last_done, last_progress = 0, _native.perf_now_ns()
    while True:
        done = int(load.completed)
        now = _native.perf_now_ns()
        if done >= total or load.first_error():
            break
        if done != last_done:
            last_done, last_progress = done, now
        elif now - last_progress > STALL_NS:
            raise PerfError(
                f"the server answered {done} of {total} requests and then nothing "
                f"for {STALL_NS // 1_000_000_000} s"
            )
        if progress:
            progress(0, done / total, done)
        time.sleep(0.25 if progress else 0.01)
    end = _native.perf_now_ns()
    stats_after = api.statistics(model, version) if api else None
    records = load.drain()
    failed = int(np.count_nonzero(~records["ok"]))
    if failed:
        error = load.first_error() or "unknown error"
        raise PerfError(f"{failed} request(s) failed: {error}")
    delta = (
        stats_after.minus(stats_before)
        if stats_after is not None and stats_before is not None
        else None
    )
    window = Window(start, end, records, delta)
    return StepResult(mode, value, [window], [window], True, int(load.delayed))


def warm_up(load: Any, count: int) -> None:
    """--warmup-request-count: waits for a load limited to `count` requests to
    answer them all, checks none failed, and drops it; nothing is measured."""
    try:
        last_done, last_progress = -1, _native.perf_now_ns()
        while int(load.completed) < count and not load.first_error():
            done, now = int(load.completed), _native.perf_now_ns()
            if done != last_done:
                last_done, last_progress = done, now
            elif now - last_progress > STALL_NS:
                raise PerfError(f"warm-up: the server answered {done} of {count}")
            time.sleep(0.01)
    finally:
        load.stop()
    if load.first_error():
        raise PerfError(f"warm-up request failed: {load.first_error()}")
