"""tritonx-analyze's pure parts, without a server: the search space and the configs
it writes, reading perf_analyzer's CSV, ranking, the SLO choice, the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonx.config import parse_config_text
from tritonx.config._pb import mc
from tritonx.tools.analyze.errors import AnalyzeError
from tritonx.tools.analyze.perf import _widened, parse_csv
from tritonx.tools.analyze.results import (
    Checkpoint,
    Constraints,
    Measurement,
    pareto_front,
)
from tritonx.tools.analyze.search import _stalled
from tritonx.tools.analyze.slo import DelayStats, SloResult, _choose, parse_slo
from tritonx.tools.analyze.space import (
    Candidate,
    SpaceOptions,
    brute_candidates,
    candidate_config,
    config_text,
)

IDENTITY = parse_config_text(
    """
    name: "identity"
    backend: "python"
    max_batch_size: 8
    input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
    output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
    dynamic_batching { max_queue_delay_microseconds: 100 priority_levels: 2 }
    instance_group [ { count: 3, kind: KIND_CPU } ]
    """,
    "test",
)


def _space(**kw: object) -> SpaceOptions:
    options = SpaceOptions([1, 2], [4, 8], ["off", "on"], ["none"], [0], ["CPU"])
    for key, value in kw.items():
        setattr(options, key, value)
    return options


def test_brute_space_order_and_keys() -> None:
    keys = [c.key for c in brute_candidates(IDENTITY, _space())]
    # batch size innermost, so a sweep of it can stop early
    assert keys == [
        "cpu1_b4", "cpu1_b8", "cpu1_b4_dyn", "cpu1_b8_dyn",
        "cpu2_b4", "cpu2_b8", "cpu2_b4_dyn", "cpu2_b8_dyn",
    ]  # fmt: skip
    keys = [
        c.key
        for c in brute_candidates(
            IDENTITY,
            _space(batching=["on"], preferred=["none", "max"], delays_us=[0, 500]),
        )
        if c.instances == 1 and c.max_batch_size == 8
    ]
    assert keys == [
        "cpu1_b8_dyn",
        "cpu1_b8_dyn_d500",
        "cpu1_b8_dyn_p8",
        "cpu1_b8_dyn_p8_d500",
    ]


def test_default_batch_sizes_reach_the_models() -> None:
    big = parse_config_text('name: "m"\nmax_batch_size: 32\n', "t")
    sizes = {
        c.max_batch_size for c in brute_candidates(big, _space(max_batch_sizes=[]))
    }
    assert sizes == {1, 2, 4, 8, 16, 32}


def test_models_that_do_not_batch_only_vary_instances() -> None:
    plain = parse_config_text('name: "m"\nmax_batch_size: 0\n', "t")
    keys = [c.key for c in brute_candidates(plain, _space(instance_counts=[1, 2, 4]))]
    assert keys == ["cpu1", "cpu2", "cpu4"]
    config = candidate_config(plain, Candidate("CPU", 2), "m__cpu2")
    assert not config.HasField("dynamic_batching")


def test_candidate_config_edits_only_the_searched_fields() -> None:
    on = candidate_config(
        IDENTITY,
        Candidate("CPU", 2, 4, True, (4,), 250),
        "identity__cpu2_b4_dyn_p4_d250",
    )
    assert on.name == "identity__cpu2_b4_dyn_p4_d250"
    assert on.max_batch_size == 4
    kinds = mc.ModelInstanceGroup.Kind
    assert [(g.count, kinds.Name(g.kind)) for g in on.instance_group] == [
        (2, "KIND_CPU")
    ]
    assert list(on.dynamic_batching.preferred_batch_size) == [4]
    assert on.dynamic_batching.max_queue_delay_microseconds == 250
    assert on.dynamic_batching.priority_levels == 2  # the model's own, kept
    assert on.input == IDENTITY.input and on.backend == "python"
    off = candidate_config(IDENTITY, Candidate("CPU", 1, 8), "x")
    assert not off.HasField("dynamic_batching")
    # delay 0 with nothing else still turns dynamic batching on
    bare = candidate_config(IDENTITY, Candidate("CPU", 1, 8, True), "x")
    assert bare.HasField("dynamic_batching")
    assert "dynamic_batching" in config_text(
        candidate_config(
            parse_config_text("max_batch_size: 8", "t"),
            Candidate("CPU", 1, 8, True),
            "x",
        )
    )
    assert candidate_config(IDENTITY, Candidate(default=True), "identity") == IDENTITY


CSV_PA = """Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency
1,2392.38,1,179,196,4,23,4,0,342,403,424,2531
2,3977.42,1,305,150,5,29,5,0,394,543,625,3726
"""


def test_reads_perf_analyzers_csv(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(CSV_PA)
    row = parse_csv(path, 2)
    assert row.throughput == pytest.approx(3977.42)
    assert (row.p50_ms, row.p99_ms) == (pytest.approx(0.394), pytest.approx(3.726))
    assert row.avg_ms == pytest.approx(0.495)  # no average column: the parts' sum
    assert row.queue_ms == pytest.approx(0.150)
    path.write_text(
        CSV_PA.replace("p99 latency\n", "p99 latency,Avg latency\n").replace(
            "2531\n", "2531,411\n"
        )
    )
    assert parse_csv(path, 1).avg_ms == pytest.approx(0.411)


def test_longer_windows_on_retry() -> None:
    assert _widened(["--measurement-interval", "300"]) == [
        "--measurement-interval",
        "600",
    ]
    assert (
        _widened(
            ["--measurement-mode", "count_windows", "--measurement-request-count", "50"]
        )[-1]
        == "100"
    )
    assert _widened([]) == ["--measurement-interval", "10000"]


def _m(
    throughput: float, p99: float, concurrency: int = 1, ok: bool = True
) -> Measurement:
    return Measurement(
        "m", "c", "", "search", 0, concurrency, ok, throughput=throughput,
        p50_ms=p99 / 2, p99_ms=p99, rss_mb=100.0,
    )  # fmt: skip


def test_pareto_front_and_constraints() -> None:
    points = [_m(100, 1), _m(90, 2), _m(200, 3), _m(150, 4), _m(300, 9)]
    assert [(m.throughput, m.p99_ms) for m in pareto_front(points)] == [
        (100, 1), (200, 3), (300, 9),
    ]  # fmt: skip
    constraints = Constraints([("p99", 5.0)], min_throughput=150, max_memory_mb=50)
    assert constraints.violations(_m(100, 6)) == [
        "p99 6.00 ms > 5 ms",
        "throughput 100.0/s < 150/s",
        "memory 100 MB > 50 MB",
    ]
    assert Constraints([("p50", 5.0)]).violations(_m(100, 6)) == []


def test_throughput_stall_rule() -> None:
    assert not _stalled([100, 200])
    assert not _stalled([100, 200, 300])
    assert not _stalled([100, 103, 200])
    assert _stalled([100, 103, 104])
    assert _stalled([100, 90, 80])


def test_slo_parse() -> None:
    assert parse_slo("p99=5ms") == ("p99", 5.0)
    assert parse_slo("p95 = 2500us") == ("p95", 2.5)
    assert parse_slo("avg=0.01s") == ("avg", 10.0)
    for bad in ("p99", "p42=5ms", "p99=-1ms", "p99=5min"):
        with pytest.raises(AnalyzeError):
            parse_slo(bad)


def _slo(*delays: tuple[int, list[float]]) -> SloResult:
    slo = SloResult("p99", 5.0, Candidate("CPU", 1, 8, True))
    slo.stats = [DelayStats(d, list(t)) for d, t in delays]
    _choose(slo)
    return slo


def test_slo_choice_and_confidence() -> None:
    high = _slo((0, [100, 102, 101]), (500, [150, 152, 149]))
    assert high.chosen is not None and high.chosen.delay_us == 500
    assert high.confidence == "high"
    assert high.candidate == Candidate("CPU", 1, 8, True, (), 500)
    # apart but noisy (spread 20 %)
    assert _slo((0, [100, 101]), (500, [140, 170])).confidence == "medium"
    # quiet but overlapping
    assert _slo((0, [100, 104]), (500, [103, 106])).confidence == "medium"
    # noisy and overlapping
    assert _slo((0, [100, 150]), (500, [110, 160])).confidence == "low"
    none = _slo((0, [0, 0]))
    assert none.chosen is None and "no delay met" in none.summary


def test_checkpoint_refuses_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    first = Checkpoint(path, {"perf_args": ["-a"]}, fresh=False)
    first.put(_m(100, 1))
    again = Checkpoint(path, {"perf_args": ["-a"]}, fresh=False)
    assert again.resumed == 1 and again.get(_m(100, 1).ident) == _m(100, 1)
    with pytest.raises(AnalyzeError, match=r"other measurement settings \(perf_args\)"):
        Checkpoint(path, {"perf_args": ["-b"]}, fresh=False)
    assert Checkpoint(path, {"perf_args": ["-b"]}, fresh=True).resumed == 0
    path.write_text("{")
    with pytest.raises(AnalyzeError, match="unreadable checkpoint"):
        Checkpoint(path, {}, fresh=False)


def test_report_draws_an_slo_whose_delays_all_failed(tmp_path: Path) -> None:
    # Every repeat of every delay failed (no throughputs): the report still renders,
    # with bars at zero and no whiskers, instead of ending in a traceback.
    from tritonx.tools.analyze.report import write_report
    from tritonx.tools.analyze.search import ModelResult

    slo = SloResult("p99", 5.0, Candidate("CPU", 1, 8, True))
    slo.stats = [DelayStats(0, [], failed=2), DelayStats(200, [], failed=2)]
    _choose(slo)
    base = parse_config_text('name: "m" backend: "python" max_batch_size: 8', "m")
    result = ModelResult("m", base, slo=slo)
    page = write_report(
        tmp_path, [result], Constraints([("p99", 5.0)]), "throughput", "", {}
    )
    assert "no delay met p99" in page.read_text()
    assert (tmp_path / "plots" / "m.png").stat().st_size > 0
