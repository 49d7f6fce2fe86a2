"""tritonx-perf's two load modes from perf_analyzer beside the sweeps
(tools/perf/load_modes.py).

--fixed-schedule (trace replay): every --input-data entry is one request, sent once
at its "timestamp" (ms after the start). The model logs the id each request carries (INPUT0 holds it), so the tests see which
entries reached the server and in which order: time order, not file order, with the
warm-up entries (the first --warmup-request-count of the file) first. The schedule
is 150 ms apart or more, so that order survives a loaded machine; times are only
checked from below (a request never goes before its time: late is possible on a
busy machine, early is a bug).

--periodic-concurrency-range start:end:step with --request-period P (one gRPC
stream): a decoupled model logs, in one file and in the order it happens, when each
request begins and each response just before sending it; every request of a group
must have logged P responses before any request of the next group begins (a response
is logged before the client can see it, and the next group is sent after). No timing
is checked.
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


# Decoupled: RESPONSES responses per request, 20 ms apart; logs "begin <key>" and
# "sent <key> <k>" (a key per request; each response's line just before it goes)
# in the order they happen, from every instance (in Triton each is a process of its
# own: one appending file, lines written whole).
TALKER = """
name: "talker"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
instance_group [ { count: 6, kind: KIND_CPU } ]
parameters { key: "log" value: { string_value: "LOG" } }
"""
TALKER_MODEL = """
import json
import os
import time
import uuid

import numpy as np
import triton_python_backend_utils as pb_utils

RESPONSES = 12


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.path = config["parameters"]["log"]["string_value"]

    def note(self, line):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (line + "\\n").encode())
        finally:
            os.close(fd)

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            key = uuid.uuid4().hex
            self.note(f"begin {key}")
            for k in range(1, RESPONSES + 1):
                time.sleep(0.02)
                out = pb_utils.Tensor("OUT", np.array([k], np.int32))
                # Logged before it goes: a client may act on a response (and the
                # next group begin) before a line written after send() would be.
                self.note(f"sent {key} {k}")
                sender.send(pb_utils.InferenceResponse([out]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


@pytest.fixture(scope="module")
def talker(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunningServer]:
    root = tmp_path_factory.mktemp("periodic")
    log = root / "talk.log"
    config = TALKER.replace("LOG", str(log))
    write_model(root / "repo", "talker", config, TALKER_MODEL)
    (root / "in.json").write_text(json.dumps({"data": [{"IN": [1]}]}))
    with run_server(root / "repo") as server:
        yield log, server


def _check_groups(log: Path, groups: list[int], period: int) -> None:
    """Each group begins only once every request of the one before has sent
    `period` responses; every request sends all of its responses."""
    lines = [line.split() for line in log.read_text().splitlines() if line]
    firsts = [sum(groups[:g]) for g in range(len(groups))]  # begin positions
    begun: list[str] = []
    sent: dict[str, int] = {}
    for kind, key, *count in lines:
        if kind == "sent":
            sent[key] = int(count[0])
            continue
        if len(begun) in firsts[1:]:
            g = firsts.index(len(begun))
            previous = begun[firsts[g - 1] : firsts[g]]
            short = {k: sent.get(k, 0) for k in previous if sent.get(k, 0) < period}
            assert not short, (f"group {g} began early", short, lines)
        begun.append(key)
    assert len(begun) == sum(groups), lines
    assert all(sent[key] == 12 for key in begun), sent


def _periodic_args(server: RunningServer, log: Path, export: Path) -> list[str]:
    return [
        *("-m", "talker", "-u", server.grpc_url, "-i", "grpc", "--streaming"),
        *("--periodic-concurrency-range", "2:6:2", "--request-period", "3"),
        *("--input-data", str(log.parent / "in.json")),
        *("--profile-export-file", str(export)),
    ]


def test_periodic_concurrency_groups(
    talker: tuple[Path, RunningServer], tmp_path: Path
) -> None:
    log, server = talker
    log.write_text("")
    export = tmp_path / "export.json"
    out = ok_run(*_periodic_args(server, log, export))
    # 2, then 2 more twice.
    _check_groups(log, [2, 2, 2], period=3)
    assert "Periodic concurrency: 2:6:2" in out and "Request count: 6" in out, out
    requests = json.loads(export.read_text())["experiments"][0]["requests"]
    assert [len(r["response_timestamps"]) for r in requests] == [12] * 6


def test_periodic_concurrency_refusals(
    talker: tuple[Path, RunningServer], tmp_path: Path
) -> None:
    log, server = talker
    args = _periodic_args(server, log, tmp_path / "e.json")
    without_export = args[: args.index("--profile-export-file")]
    cases = {
        "no export": (without_export, "Must provide --profile-export-file"),
        "no stream": (
            [a for a in args if a != "--streaming"],
            "requires bi-directional gRPC streaming",
        ),
        "with a range": (
            [*args, "--concurrency-range", "2"],
            "Cannot use both PeriodicConcurrency and Concurrency",
        ),
        "backwards": (
            [*args, "--periodic-concurrency-range", "6:2:2"],
            "The <start> must be <= <end>.",
        ),
        "period": ([*args, "--request-period", "0"], "The value must be > 0"),
        "step": (
            [*args, "--periodic-concurrency-range", "2:7:2"],
            "The <step> value must be a factor of the range size",
        ),
    }
    for name, (case, expected) in cases.items():
        line = one_error_line(perf(*case, timeout=60))
        assert expected in line, (name, line)


@pytest.mark.skipif(
    not os.environ.get("PERF_ANALYZER"), reason="set PERF_ANALYZER to compare"
)
def test_periodic_groups_as_perf_analyzer(
    talker: tuple[Path, RunningServer], tmp_path: Path
) -> None:
    """perf_analyzer 2.60 with the same flags against the same model: the same groups,
    each after the same period (the check the tritonx-perf run passes)."""
    log, server = talker
    log.write_text("")
    args = _periodic_args(server, log, tmp_path / "pa.json")
    done = subprocess.run(
        [os.environ["PERF_ANALYZER"], *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    _check_groups(log, [2, 2, 2], period=3)


def test_request_period_past_the_last_response(
    talker: tuple[Path, RunningServer], tmp_path: Path
) -> None:
    """perf_analyzer counts every response a request gets, the FINAL flag's empty one
    included (12 + 1 here): a period of 13 is reached at the FINAL flag; 14 never is,
    and the run fails with perf_analyzer's words instead of going on without it."""
    log, server = talker
    log.write_text("")
    ok_run(*_periodic_args(server, log, tmp_path / "a.json"), "--request-period", "13")
    _check_groups(log, [2, 2, 2], period=12)
    log.write_text("")
    short = [
        *_periodic_args(server, log, tmp_path / "b.json"),
        "--request-period",
        "14",
    ]
    failed = perf(*short)
    assert failed.returncode != 0
    assert "Request received final response before request period was reached" in (
        one_error_line(failed)
    )
    # The first group ended short: nothing more was sent.
    assert log.read_text().count("begin") == 2, log.read_text()
    if os.environ.get("PERF_ANALYZER"):
        # perf_analyzer throws from its response callback: it aborts, its message
        # garbled when both requests of the group throw at once ("terminate called
        # recursively").
        log.write_text("")
        pa_args = _periodic_args(server, log, tmp_path / "c.json")
        done = subprocess.run(
            [os.environ["PERF_ANALYZER"], *pa_args, "--request-period", "14"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0 and "terminate called" in done.stderr, done.stderr
        assert log.read_text().count("begin") == 2, log.read_text()
