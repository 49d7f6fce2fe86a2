"""tritonx-perf --fixed-schedule (perf_analyzer's trace replay): every --input-data
entry is one request, sent once at its "timestamp" (ms after the start).

The model logs the id each request carries (INPUT0 holds it), so the tests see which
entries reached the server and in which order: time order, not file order, with the
warm-up entries (the first --warmup-request-count of the file) first. The schedule
is 150 ms apart or more, so that order survives a loaded machine; times are only
checked from below (a request never goes before its time: late is possible on a
busy machine, early is a bug).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from perfutil import ok_run, one_error_line, perf, write_model
from serverutil import RunningServer, run_server

pytestmark = pytest.mark.timeout(240)

STAMP = """
name: "stamp"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
instance_group [ { count: 2, kind: KIND_CPU } ]
parameters { key: "log" value: { string_value: "LOG" } }
"""
STAMP_MODEL = """
import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.log = open(config["parameters"]["log"]["string_value"], "a")

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            self.log.write(f"{int(x[0])}\\n")
            self.log.flush()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return out
"""

# (id, timestamp ms) in file order; the ids in time order: 5, 1, 2, 4, 3.
ENTRIES = [(1, 150), (2, 300), (3, 750), (4, 600), (5, 0)]


@pytest.fixture(scope="module")
def log_and_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, RunningServer]:
    root = tmp_path_factory.mktemp("fixed")
    log = root / "seen.log"
    write_model(root / "repo", "stamp", STAMP.replace("LOG", str(log)), STAMP_MODEL)
    with run_server(root / "repo") as server:
        yield log, server


def _data(path: Path, entries: list[tuple[int, object]], streams: bool = False) -> Path:
    items = [{"timestamp": stamp, "INPUT0": [float(i)]} for i, stamp in entries]
    data: list[object] = [items[:2], items[2:]] if streams else list(items)
    path.write_text(json.dumps({"data": data}))
    return path


def _seen(log: Path) -> list[int]:
    """The ids logged so far, and empties the log for the next run."""
    ids = [int(line) for line in log.read_text().split()] if log.exists() else []
    log.write_text("")
    return ids


def test_requests_go_in_time_order_at_their_times(
    log_and_server: tuple[Path, RunningServer], tmp_path: Path
) -> None:
    log, server = log_and_server
    data = _data(tmp_path / "data.json", [(i, [t]) for i, t in ENTRIES])
    export = tmp_path / "export.json"
    log.write_text("")
    out = ok_run(
        *("-m", "stamp", "-u", server.grpc_url, "-i", "grpc", "--fixed-schedule"),
        *("--input-data", str(data), "--profile-export-file", str(export)),
    )
    assert _seen(log) == [5, 1, 2, 4, 3]
    assert "Fixed schedule: 5 requests" in out and "Request count: 5" in out, out
    experiment = json.loads(export.read_text())["experiments"][0]
    window_start = experiment["window_boundaries"][0]
    sent = sorted((r["timestamp"] - window_start) / 1e6 for r in experiment["requests"])
    for at, due in zip(sent, sorted(t for _, t in ENTRIES), strict=True):
        assert at >= due - 1, (sent, ENTRIES)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_warmup_streams_and_plain_numbers(
    log_and_server: tuple[Path, RunningServer], tmp_path: Path, protocol: str
) -> None:
    log, server = log_and_server
    # Timestamps as plain numbers, entries in two streams (flattened in order).
    data = _data(tmp_path / "data.json", list(ENTRIES), streams=True)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    log.write_text("")
    out = ok_run(
        *("-m", "stamp", "-u", url, "-i", protocol, "--fixed-schedule"),
        *("--input-data", str(data), "--warmup-request-count", "2", "--sync"),
    )
    # Entries 1 and 2 warm up (on their own schedule), then 5, 4, 3 by time.
    assert _seen(log) == [1, 2, 5, 4, 3]
    assert "Request count: 3" in out and "Using synchronous calls" in out, out


def test_refusals(log_and_server: tuple[Path, RunningServer], tmp_path: Path) -> None:
    _, server = log_and_server
    base = ["-m", "stamp", "-u", server.grpc_url, "-i", "grpc"]
    good = str(_data(tmp_path / "good.json", [(1, 0), (2, 10)]))
    missing = tmp_path / "missing.json"
    missing.write_text(
        json.dumps({"data": [{"timestamp": 0, "INPUT0": [1.0]}, {"INPUT0": [2.0]}]})
    )
    negative = str(_data(tmp_path / "negative.json", [(1, -5)]))
    words = str(_data(tmp_path / "words.json", [(1, "soon")]))
    cases = {
        "no data": (["--fixed-schedule"], "you must provide a dataset"),
        "concurrency": (
            ["--fixed-schedule", "--input-data", good, "--concurrency-range", "2"],
            "Cannot use both FixedSchedule and Concurrency inference load modes.",
        ),
        "rate": (
            ["--fixed-schedule", "--input-data", good, "--request-rate-range", "5"],
            "Cannot use both FixedSchedule and RequestRate inference load modes.",
        ),
        "count": (
            ["--fixed-schedule", "--input-data", good, "--request-count", "1"],
            "Cannot specify `--request-count` when using `--fixed-schedule`.",
        ),
        "missing": (
            ["--fixed-schedule", "--input-data", str(missing)],
            "step 1: missing 'timestamp'",
        ),
        "negative": (
            ["--fixed-schedule", "--input-data", negative],
            "must be a number",
        ),
        "words": (["--fixed-schedule", "--input-data", words], 'not "soon"'),
        "directory": (
            ["--fixed-schedule", "--input-data", str(tmp_path)],
            "is a directory",
        ),
        "all warm-up": (
            ["--fixed-schedule", "--input-data", good, "--warmup-request-count", "2"],
            "none left after 2 warm-up request(s)",
        ),
        # Without the flag a timestamp is an input like any other: the model has none.
        "no flag": (["--input-data", good], "the model has no input 'timestamp'"),
    }
    for name, (args, expected) in cases.items():
        line = one_error_line(perf(*base, *args, timeout=60))
        assert expected in line, (name, line)


@pytest.mark.skipif(
    not os.environ.get("PERF_ANALYZER"), reason="set PERF_ANALYZER to compare"
)
def test_same_requests_as_perf_analyzer(
    log_and_server: tuple[Path, RunningServer], tmp_path: Path
) -> None:
    """perf_analyzer 2.60 replays the same file against the same server: the same
    entries reach the model in the same order, and both count the same requests."""
    log, server = log_and_server
    # perf_analyzer reads FP32 data only from JSON numbers with a fraction.
    data = _data(tmp_path / "data.json", [(i, [t]) for i, t in ENTRIES])
    args = ["-m", "stamp", "-u", server.grpc_url, "-i", "grpc", "--fixed-schedule"]
    args += ["--input-data", str(data), "--warmup-request-count", "1"]
    runs = {}
    for name, command in (
        ("tritonx-perf", None),
        ("perf_analyzer", [os.environ["PERF_ANALYZER"]]),
    ):
        log.write_text("")
        if command is None:
            out = ok_run(*args)
        else:
            done = subprocess.run(
                [*command, *args], capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stdout + done.stderr
            out = done.stdout
        counts = [
            line.split()[-1] for line in out.splitlines() if "Request count:" in line
        ]
        runs[name] = (_seen(log), counts[-1])
    assert runs["tritonx-perf"] == runs["perf_analyzer"] == ([1, 5, 2, 4, 3], "4")
