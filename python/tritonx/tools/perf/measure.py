"""The measurement loop of one load step, as perf_analyzer's: windows of
--measurement-interval ms (or of --measurement-request-count requests), until the
last three agree within --stability-percentage on throughput and latency, or
--max-trials windows were measured. With --request-count the step is one window of
exactly that many requests (the load sends no more). The load runs in C++ the whole
time; between windows this side only reads the finished requests and the server's
statistics.

The method is perf_analyzer's (inference_profiler.cc), because the tail of the
latency distribution depends on it:
- a request belongs to the window in which it ENDS, wherever it started, so a
  request in flight across a window edge is counted once (in the later window)
  rather than dropped: dropping those drops the requests slowed by whatever happens
  at the edges, and long requests are the likeliest to straddle one;
- a time window lasts 1.2 x --measurement-interval, as perf_analyzer sleeps;
- percentiles are the sorted latencies at index round(p/100 x (n - 1)), not an
  interpolation;
- a step is stable when max/min of the last three windows' throughput and of their
  latency (average or --percentile) are within 1 + --stability-percentage/100;
  asynchronous loads whose throughput is stable but latency is not are accepted
  with a warning, as perf_analyzer does;
- with --latency-threshold the windows stop once one of the last three exceeds it."""

from __future__ import annotations

import argparse
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
    latency_threshold_us: float = 0.0  # --latency-threshold; 0: none
    async_mode: bool = False


def measure_options(args: argparse.Namespace) -> MeasureOptions:
    """The measurement flags of a parsed tritonx-perf command line."""
    return MeasureOptions(
        interval_ms=args.measurement_interval,
        count_windows=args.measurement_mode == "count_windows",
        request_count=args.measurement_request_count,
        stability_pct=args.stability_percentage,
        max_trials=args.max_trials,
        percentile=args.percentile,
        batch=args.batch,
        total_requests=args.request_count,
        latency_threshold_us=args.latency_threshold * 1000,
        async_mode=args.async_mode,
    )


# perf_analyzer sleeps this multiple of --measurement-interval per time window.
WINDOW_STRETCH = 1.2


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
        if percentile < 0:
            return float(np.mean(lat))
        return percentile_of(np.sort(lat), percentile)


def percentile_of(ordered: np.ndarray[Any, Any], p: float) -> float:
    """perf_analyzer's percentile: the sorted value at index round(p/100 x (n-1))."""
    if ordered.size == 0:
        return 0.0
    return float(ordered[int(p / 100.0 * (ordered.size - 1) + 0.5)])


@dataclass
class StepResult:
    mode: str  # "concurrency" | "request_rate"
    value: float
    windows: list[Window]  # the ones the result is made of (the last three)
    all_windows: list[Window] = field(default_factory=list)
    stable: bool = True
    delayed: int = 0
    latency_unstable: bool = False  # async: accepted on throughput alone

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


# Columns with one entry per response (the others have one per request), and the
# offsets that map requests to their responses.
RESPONSE_COLUMNS = ("response_ns", "response_body")
OFFSETS = "response_offsets"


def _offsets(counts: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def concat(chunks: list[Columns]) -> Columns:
    chunks = [c for c in chunks if c and len(c["start_ns"])]
    if not chunks:
        return empty_columns()
    # Optional columns ("step", the OpenAI bodies) are those of the first chunk:
    # every drain of one load has the same.
    out: Columns = {
        key: np.concatenate([c[key] for c in chunks])
        for key in chunks[0]
        if key != OFFSETS
    }
    out[OFFSETS] = _offsets(out["response_count"])
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
        "sequence_start": np.zeros(0, dtype=bool),
        "sequence_end": np.zeros(0, dtype=bool),
        "response_count": ints,
        "first_response_ns": ints,
        "response_ns": ints,
        OFFSETS: np.zeros(1, dtype=np.int64),
    }


def select(columns: Columns, mask: np.ndarray[Any, Any]) -> Columns:
    # Each request's responses follow each other: keep those of the kept requests.
    keep = np.repeat(mask, columns["response_count"])
    out = {
        k: v[keep] if k in RESPONSE_COLUMNS else v[mask]
        for k, v in columns.items()
        if k != OFFSETS
    }
    out[OFFSETS] = _offsets(out["response_count"])
    return out


def latencies_us(columns: Columns) -> np.ndarray[Any, Any]:
    ok = columns["ok"]
    return (columns["end_ns"][ok] - columns["start_ns"][ok]) / 1000.0


def _within(values: list[float], band: float) -> bool:
    low, high = min(values), max(values)
    return low > 0 and high / low <= 1 + band


def _stable(
    windows: list[Window], options: MeasureOptions, check_latency: bool = True
) -> bool:
    """perf_analyzer's rule: over the last three windows, max/min of throughput
    (and of the stabilizing latency) at most 1 + the stability percentage."""
    if len(windows) < STABLE_WINDOWS:
        return False
    last = windows[-STABLE_WINDOWS:]
    band = options.stability_pct / 100.0
    if not _within([w.throughput(options.batch) for w in last], band):
        return False
    return not check_latency or _within(
        [w.latency_us(options.percentile) for w in last], band
    )


def _over_threshold(windows: list[Window], options: MeasureOptions) -> bool:
    """perf_analyzer stops measuring a step once one of its last three windows'
    stabilizing latency reaches --latency-threshold."""
    if not options.latency_threshold_us or len(windows) < STABLE_WINDOWS:
        return False
    return any(
        w.latency_us(options.percentile) >= options.latency_threshold_us
        for w in windows[-STABLE_WINDOWS:]
    )


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
    load.drain()  # what finished before the first window belongs to no window
    start = _native.perf_now_ns()
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
            else int(interval_ns * WINDOW_STRETCH)
        )
        # Between windows nothing is read but a counter: the client threads and the
        # server keep the CPUs (a time window with no display is one sleep).
        if options.count_windows:
            pause = 0.01
        else:
            pause = 0.25 if progress else options.interval_ms * WINDOW_STRETCH / 1000
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
                    else (now - window_start) / (interval_ns * WINDOW_STRETCH)
                )
                progress(trial, min(fraction, 1.0), done)
            time.sleep(min(pause, max(deadline - now, 0) / 1e9))
        end = _native.perf_now_ns()
        stats_after = api.statistics(model, version) if api else None
        everything = concat([*chunks, load.drain()])
        # The window's requests are those that ended in it, wherever they started
        # (perf_analyzer's rule; see the module docstring).
        ends = everything["end_ns"]
        inside = (ends > window_start) & (ends <= end)
        later = ends > end
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
        stable = _stable(windows, options)
        if stable or _over_threshold(windows, options):
            return StepResult(
                mode,
                value,
                windows[-STABLE_WINDOWS:],
                windows,
                stable,
                int(load.delayed),
            )
    # perf_analyzer accepts an asynchronous step whose throughput settled although
    # its latency did not (requests queue up at a rate the server cannot keep).
    if options.async_mode and _stable(windows, options, check_latency=False):
        return StepResult(
            mode,
            value,
            windows[-STABLE_WINDOWS:],
            windows,
            True,
            int(load.delayed),
            latency_unstable=True,
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


def started(load: Any) -> Any:
    """Starts a _native.PerfLoad; a connection it cannot open is a PerfError."""
    try:
        load.start()
    except RuntimeError as exc:
        raise PerfError(str(exc)) from None
    return load


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
