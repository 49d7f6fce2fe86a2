"""tritonx-analyze's bad inputs: each ends with one line on stderr and a non-zero
exit, never a traceback. Most never reach a measurement (/bin/true stands in
for the perf command there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from analyzeutil import TEST_PERF_ARGS, one_error_line, run_analyze
from serverutil import free_port

STAND_IN = "/bin/true"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["-m", "nope"], "unknown model 'nope'"),
        (["-m", "identity", "--concurrency", "1,x"], "is not a list of integers"),
        (["-m", "identity", "--latency-budget", "-3"], "must be greater than 0"),
        (["-m", "identity", "--slo", "p42=5ms"], "bad --slo 'p42=5ms'"),
        (["-m", "identity", "--objective", "cost"], "invalid choice: 'cost'"),
        (["-m", "identity", "--shape", "INPUT0"], "bad --shape 'INPUT0'"),
        (["-m", "identity", "--perf-command", "/nonexistent/perf"], "perf command"),
        ([], "required: -m"),
        (["-m", "identity", "--concurrent"], "needs at least two models"),
        (
            ["-m", "identity,add_sub", "--concurrent", "--slo", "p99=5ms"],
            "not with --concurrent",
        ),
    ],
)
def test_bad_flags_and_names(
    example_repo: Path, tmp_path: Path, extra: list[str], expected: str
) -> None:
    args = ["-r", str(example_repo), "--output-dir", str(tmp_path / "out")]
    if "--perf-command" not in extra:
        args += ["--perf-command", STAND_IN]
    result = run_analyze(*args, *extra)
    assert result.returncode == 2, result.stderr
    assert expected in one_error_line(result)


def test_unreachable_server(example_repo: Path, tmp_path: Path) -> None:
    result = run_analyze(
        "-r", example_repo, "-m", "identity", "--perf-command", STAND_IN,
        "--output-dir", tmp_path / "out", "--server-url", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert result.returncode == 2
    assert "is unreachable" in one_error_line(result)


def test_model_that_does_not_load(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 4\n'
    )
    result = run_analyze(
        "-r", repo, "-m", "broken", "--perf-command", STAND_IN,
        "--output-dir", tmp_path / "out",
    )  # fmt: skip
    assert result.returncode == 2
    assert "model 'broken' does not load" in one_error_line(result)


def test_impossible_constraints(example_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_analyze(
        "-r", example_repo, "-m", "identity", "--perf-args", TEST_PERF_ARGS, "--shape", "INPUT0:16",
        "--output-dir", out, "--mode", "brute", "--instance-counts", "1",
        "--max-batch-sizes", "8", "--dynamic-batching", "off,on",
        "--concurrency", "1,2", "--latency-budget", "0.000001",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert "no candidate of identity met the constraints (p99 <= 1e-06 ms)" in line
    # The report says so, candidates with their reasons; no config is written.
    page = (out / "report.html").read_text()
    assert "No candidate met the constraints" in page
    for key in ("default", "cpu1_b8", "cpu1_b8_dyn"):
        assert f'data-candidate="{key}"' in page
    assert "no: p99" in page
    assert not (out / "best_models" / "identity").exists()
