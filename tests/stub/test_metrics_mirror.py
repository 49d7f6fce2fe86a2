"""The server's mirror of a stub's custom metrics across many stub restarts: each
restarted stub continues its predecessor's series, and the family objects of dead
stubs are let go once their series are taken over (a model whose stub keeps dying
must not grow the server). The records are the ones a stub sends
(backends/stub/metrics_sync.py); tests/stub/test_stub_lifecycle.py covers one
restart through the wire."""

from __future__ import annotations

import gc

from tritonx.backends.pb import metrics
from tritonx.backends.stub.metrics_sync import MetricsMirror

COUNTER = metrics.MetricFamily.COUNTER
HISTOGRAM = metrics.MetricFamily.HISTOGRAM
KEY = (("model", "m"),)  # the label set of every metric here


def _families_named(*names: str) -> int:
    gc.collect()
    # type(), not isinstance(): isinstance reads __class__, which some objects
    # answer with a warning (torch.distributed's deprecated reduce_op).
    return sum(
        issubclass(type(obj), metrics.MetricFamily) and obj.name in names
        for obj in gc.get_objects()
    )


def _stub_starts(mirror: MetricsMirror, calls: str, sizes: str) -> None:
    """What a new stub's initialize sends: two families, one metric in each."""
    assert mirror.create_family(0, calls, "Calls", COUNTER) is None
    assert mirror.create_family(1, sizes, "Sizes", HISTOGRAM) is None
    mirror.apply(
        [
            ("metric", 0, {"model": "m"}, None),
            ("metric", 1, {"model": "m"}, [1.0, 10.0]),
        ]
    )


def _one_call(mirror: MetricsMirror, calls: str, sizes: str) -> None:
    mirror.apply(
        [
            ("add", calls, KEY, 1.0, [], 0.0, 0),
            ("add", sizes, KEY, 0.0, [0, 1, 0], 5.0, 1),
        ]
    )


def _mirror_after_one_call(calls: str, sizes: str) -> MetricsMirror:
    """The server's mirror of a first stub that started and served one call."""
    mirror = MetricsMirror()
    _stub_starts(mirror, calls, sizes)
    _one_call(mirror, calls, sizes)
    return mirror


def test_restarted_stubs_continue_the_series_and_leave_no_families_behind() -> None:
    calls, sizes = "mirror_restart_calls", "mirror_restart_sizes"
    mirror = _mirror_after_one_call(calls, sizes)
    for _ in range(25):
        mirror.restarted()
        _stub_starts(mirror, calls, sizes)
        _one_call(mirror, calls, sizes)
        # the live stub's two families; the dead stubs' ones are gone
        assert _families_named(calls, sizes) == 2
    series = metrics.find_series(calls, KEY)
    histogram = metrics.find_series(sizes, KEY)
    assert series is not None and histogram is not None
    assert series.value == 26.0
    assert (histogram.count, histogram.sum, histogram.bucket_counts) == (
        26,
        130.0,
        [0, 26, 0],
    )


def test_series_outlive_stubs_that_died_before_making_their_metrics() -> None:
    calls, sizes = "mirror_early_calls", "mirror_early_sizes"
    mirror = _mirror_after_one_call(calls, sizes)
    # three stubs die in initialize between creating a family and its metric
    for _ in range(3):
        mirror.restarted()
        assert mirror.create_family(0, calls, "Calls", COUNTER) is None
    assert metrics.find_series(calls, KEY) is not None  # still on /metrics
    mirror.restarted()
    _stub_starts(mirror, calls, sizes)
    _one_call(mirror, calls, sizes)
    series = metrics.find_series(calls, KEY)
    assert series is not None and series.value == 2.0
    assert _families_named(calls, sizes) == 2
