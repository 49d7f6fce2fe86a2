"""tritonx-perf's measurement rules, which are perf_analyzer's
(inference_profiler.cc): nearest-rank percentiles and the max/min stability rule,
checked on windows built from known request times (the wire-level behaviour is in
test_perf_tool.py)."""

from __future__ import annotations

import numpy as np

from tritonx.tools.perf.measure import (
    MeasureOptions,
    Window,
    _stable,
    percentile_of,
)


def _window(count: int, latency_us: float, seconds: float = 1.0) -> Window:
    """A window of `count` successful requests of one latency each."""
    starts = np.arange(count, dtype=np.int64) * 1000
    ints = np.zeros(count, dtype=np.int64)
    records = {
        "start_ns": starts,
        "end_ns": starts + int(latency_us * 1000),
        "send_ns": ints,
        "recv_ns": ints,
        "sequence_id": np.zeros(count, dtype=np.uint64),
        "ok": np.ones(count, dtype=bool),
        "sequence_start": np.zeros(count, dtype=bool),
        "sequence_end": np.zeros(count, dtype=bool),
        "response_count": np.ones(count, dtype=np.int64),
        "first_response_ns": starts,
        "response_ns": starts,
        "response_offsets": np.arange(count + 1, dtype=np.int64),
    }
    return Window(0, int(seconds * 1e9), records, None)


def test_percentile_is_the_nearest_rank_perf_analyzer_takes() -> None:
    ordered = np.arange(1, 11, dtype=float)  # 1..10
    # index round(p/100 x (n-1)): p50 -> 4.5 + 0.5 -> 5 -> value 6; p99 -> 9 -> 10.
    assert percentile_of(ordered, 50) == 6.0
    assert percentile_of(ordered, 90) == 9.0
    assert percentile_of(ordered, 99) == 10.0
    assert percentile_of(np.zeros(0), 99) == 0.0


def test_stable_when_max_over_min_is_within_the_band() -> None:
    options = MeasureOptions(stability_pct=50.0)
    # Throughput 100, 150, 100: max/min 1.5, inside 1 + 50 %.
    assert _stable([_window(100, 10), _window(150, 10), _window(100, 10)], options)
    # 100, 190, 100: each within 50 % of the mean (130), but max/min 1.9 is not.
    assert not _stable([_window(100, 10), _window(190, 10), _window(100, 10)], options)
    # Throughput steady, latency 10 vs 20 us: unstable on latency alone.
    windows = [_window(100, 10), _window(100, 20), _window(100, 10)]
    assert not _stable(windows, options)
    assert _stable(windows, options, check_latency=False)
    # Fewer than three windows, or an empty one, is never stable.
    assert not _stable([_window(100, 10), _window(100, 10)], options)
    assert not _stable([_window(0, 10), _window(100, 10), _window(100, 10)], options)


def test_stabilizing_on_a_percentile() -> None:
    options = MeasureOptions(stability_pct=10.0, percentile=99)
    windows = [_window(100, 10), _window(100, 10.5), _window(100, 10)]
    assert _stable(windows, options)
