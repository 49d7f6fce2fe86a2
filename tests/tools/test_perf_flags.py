"""tritonx-perf's search, data and tracing flags from perf_analyzer: --binary-search,
a range without an end, the deprecated -t/-c/-d, data directories, several
--input-data sources, -z, the trace flags, --version and --service-kind.

The search order is checked twice: on its own (``Sweep``, no server) and end to end
against a model whose latency grows with the concurrency by design (one instance,
200 ms per request, no batching): with ``--request-count 6`` the average latency
is ~200 ms at concurrency 1, ~367 ms at 2, ~500 ms at 3, ~600 ms at 4 and ~700 ms
at 8, so the thresholds below sit 100 ms or more from every level they separate.
"""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path

import numpy as np
import pytest
from perfutil import IDENTITY, SHORT, ok_run, one_error_line, perf, write_model
from serverutil import RunningServer, reference_command, run_reference, run_server
from testmodels import BLS_CHAIN_CONFIG, ECHO_MODEL, bls_chain_model

from tritonx.tools.perf.errors import PerfError
from tritonx.tools.perf.sweep import add_sweep_flags, sweep_from_args

pytestmark = pytest.mark.timeout(240)

SLOW = """
name: "slow"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""
SLOW_MODEL = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            time.sleep(0.2)
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return out
"""

# Accepts a request only if every batch item holds EXPECTED (a data file's values)
# or is zero data (NUM zeros, TEXT "000"): random data and wrong files fail the run.
CHECKER = """
name: "checker"
backend: "python"
max_batch_size: 4
input [ { name: "NUM", data_type: TYPE_FP32, dims: [ -1 ] },
        { name: "TEXT", data_type: TYPE_STRING, dims: [ -1 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""
CHECKER_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils

NUM = [1.5, -2.0, 3.25]
TEXT = [b"hello", b"wide world"]


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            num = pb_utils.get_input_tensor_by_name(r, "NUM").as_numpy()
            text = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy()
            good = all(
                (n.tolist() == NUM and t.tolist() == TEXT)
                or (not n.any() and all(x == b"000" for x in t))
                for n, t in zip(num, text)
            )
            if good:
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", num)]))
            else:
                out.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"unexpected {num!r} {text!r}")))
        return out
"""


# An ensemble of two identity steps, and a BLS model calling identity twice per
# request: both report identity as their composing model.
IDENTITY_TWICE = bls_chain_model("identity", calls=2, batch=True)
PIPELINE = """
name: "pipeline"
platform: "ensemble"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
ensemble_scheduling { step [
  { model_name: "identity" model_version: -1
    input_map { key: "INPUT0" value: "INPUT0" } output_map { key: "OUTPUT0" value: "mid" } },
  { model_name: "identity" model_version: -1
    input_map { key: "INPUT0" value: "mid" } output_map { key: "OUTPUT0" value: "OUTPUT0" } }
] }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    repo = tmp_path_factory.mktemp("perf_flags_repo")
    write_model(repo, "slow", SLOW, SLOW_MODEL)
    write_model(repo, "checker", CHECKER, CHECKER_MODEL)
    write_model(repo, "identity", IDENTITY, ECHO_MODEL)
    write_model(repo, "bls", BLS_CHAIN_CONFIG, IDENTITY_TWICE)
    (repo / "pipeline" / "1").mkdir(parents=True)
    (repo / "pipeline" / "config.pbtxt").write_text(PIPELINE)
    trace_file = tmp_path_factory.mktemp("perf_flags_trace") / "trace.json"
    with run_server(repo, "--trace-config", f"triton,file={trace_file}") as running:
        yield running


def _path(*, binary: bool, limit: float, **flags: object) -> list[float]:
    """The values a sweep measures when every value up to ``limit`` meets the
    latency threshold."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency-range")
    parser.add_argument("--request-rate-range")
    parser.add_argument("--latency-threshold", type=float, default=0.0)
    add_sweep_flags(parser)
    argv = ["--binary-search"] if binary else []
    for key, value in flags.items():
        argv += [f"--{key.replace('_', '-')}" if len(key) > 1 else f"-{key}"]
        if value is not True:
            argv.append(str(value))
    sweep = sweep_from_args(parser.parse_args(argv))
    values = []
    value = sweep.first()
    while value is not None:
        values.append(value)
        value = sweep.next(value <= limit)
    return values


def test_sweep_order_without_a_server() -> None:
    # Binary: start, end, then halving until the interval is no wider than step.
    path = _path(binary=True, limit=5, concurrency_range="1:16", latency_threshold=1)
    assert path == [1, 16, 8, 4, 6, 5]
    assert _path(binary=True, limit=99, concurrency_range="1:16", latency_threshold=1) == [1, 16]  # fmt: skip
    assert _path(binary=True, limit=0, concurrency_range="1:16", latency_threshold=1) == [1]  # fmt: skip
    rates = _path(
        binary=True, limit=42, request_rate_range="10:100:5", latency_threshold=1
    )
    assert rates[:3] == [10, 100, 55] and all(isinstance(r, float) for r in rates)
    assert abs(rates[-1] - 42) < 5
    # Linear: a range without an end goes on until the threshold stops it.
    assert _path(binary=False, limit=6, concurrency_range="1:0:2", latency_threshold=1) == [1, 3, 5, 7]  # fmt: skip
    assert _path(binary=False, limit=99, concurrency_range="1:8:3") == [1, 4, 7]
    # The deprecated options: -t alone, and -t/-c/-d as a range.
    assert _path(binary=False, limit=99, t=3) == [3]
    assert _path(binary=False, limit=99, t=2, c=4, d=True) == [2, 3, 4]
    refused = {
        "deprecated with a range": dict(t=2, concurrency_range="1"),
        "deprecated with a rate": dict(t=2, request_rate_range="10"),
        "no end, no threshold": dict(concurrency_range="1:0"),
        "-c below -t": dict(t=4, c=2, d=True),
    }
    for name, flags in refused.items():
        with pytest.raises(PerfError):
            _path(binary=False, limit=1, **flags)
        print(name, "refused")
    with pytest.raises(PerfError, match="latency threshold can not be 0"):
        _path(binary=True, limit=1, concurrency_range="1:4")
    with pytest.raises(PerfError, match="can not be 0"):
        _path(binary=True, limit=1, concurrency_range="1:0", latency_threshold=1)


def _steps(text: str) -> list[int]:
    return [int(v) for v in re.findall(r"^Request concurrency: (\d+)", text, re.M)]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_binary_search_end_to_end(server: RunningServer, protocol: str) -> None:
    u = server.grpc_url if protocol == "grpc" else server.http_url
    text = ok_run(
        "-m", "slow", "-u", u, "-i", protocol, "--concurrency-range", "1:8:2",
        "--binary-search", "--latency-threshold", "480", "--request-count", "6",
    )  # fmt: skip
    # 1 (200 ms) and 2 (367 ms) are within 480 ms; 8 (700) and 4 (600) are not.
    assert _steps(text) == [1, 8, 4, 2], text
    assert "Using binary search" in text
    assert text.count("Measured latency went over the set limit of 480 msec") == 2


def test_open_ended_range_and_deprecated_options(server: RunningServer) -> None:
    g = ["-u", server.grpc_url, "-i", "grpc"]
    text = ok_run(
        "-m", "slow", *g, "--concurrency-range", "1:0:2", "--latency-threshold",
        "300", "--request-count", "6",
    )  # fmt: skip
    assert _steps(text) == [1, 3], text  # 3 (500 ms) is over: the sweep ends there
    text = ok_run("-m", "identity", *g, "--shape", "INPUT0:4", "-t", "2", *SHORT)
    assert _steps(text) == [2]
    text = ok_run(
        "-m", "identity", *g, "--shape", "INPUT0:4", "-t", "1", "-c", "2", "-d", *SHORT
    )  # fmt: skip
    assert _steps(text) == [1, 2]


def _write_directory(path: Path, num: list[float], text: list[bytes]) -> Path:
    path.mkdir()
    (path / "NUM").write_bytes(np.asarray(num, dtype=np.float32).tobytes())
    (path / "TEXT").write_bytes(b"\n".join(text) + b"\n")
    return path


def test_data_directories_files_and_zero_input(
    server: RunningServer, tmp_path: Path
) -> None:
    good = _write_directory(tmp_path / "good", [1.5, -2.0, 3.25], [b"hello", b"wide world"])  # fmt: skip
    wrong = _write_directory(tmp_path / "wrong", [1.5, -2.0, 3.0], [b"hello", b"wide world"])  # fmt: skip
    data = tmp_path / "data.json"
    entry = {"NUM": [1.5, -2.0, 3.25], "TEXT": ["hello", "wide world"]}
    data.write_text(json.dumps({"data": [entry]}))
    for protocol, u in (("grpc", server.grpc_url), ("http", server.http_url)):
        base = ["-m", "checker", "-u", u, "-i", protocol, *SHORT]
        # A directory (one file per input, batch-1 data, repeated for -b 3).
        ok_run(*base, "--input-data", str(good), "-b", "3")
        ok_run(*base, "--data-directory", str(good))  # the deprecated spelling
        # Files and directories together; -z alone (zeros; random data fails).
        ok_run(*base, "--input-data", str(data), "--input-data", str(good))
        ok_run(*base, "-z", "--shape", "NUM:3", "--shape", "TEXT:2", "--string-length", "3")  # fmt: skip
        failed = one_error_line(perf(*base, "--input-data", str(wrong)))
        assert "unexpected" in failed, failed
        failed = one_error_line(
            perf(*base, "--shape", "NUM:3", "--shape", "TEXT:2", "--string-length", "3")
        )
        assert "unexpected" in failed, failed  # random data: the model refuses it


def test_data_directory_errors(server: RunningServer, tmp_path: Path) -> None:
    g = ["-m", "checker", "-u", server.grpc_url, "-i", "grpc", *SHORT]
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "NUM").write_bytes(np.zeros(3, np.float32).tobytes())
    ragged = _write_directory(tmp_path / "ragged", [1.0], [b"a"])
    (ragged / "NUM").write_bytes(b"\x00" * 5)
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"data": [{"NUM": [0, 0, 0], "TEXT": ["000", "000"]}]}))
    cases = {
        "a file per input": (["--input-data", str(missing)], "file TEXT: not found"),
        "whole elements": (["--input-data", str(ragged)], "not a whole number of FP32"),
        "zero with a file": (["-z", "--input-data", str(data)], "can't be set"),
        "no such source": (["--input-data", str(tmp_path / "nope")], "cannot read"),
    }
    for name, (args, expected) in cases.items():
        line = one_error_line(perf(*g, *args, timeout=60))
        assert expected in line, (name, line)


def _counts(text: str) -> list[int]:
    return [int(v) for v in re.findall(r"Successful request count: (\d+)", text)]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_composing_models_of_ensembles_and_bls(
    server: RunningServer, protocol: str
) -> None:
    u = server.grpc_url if protocol == "grpc" else server.http_url
    base = ["-u", u, "-i", protocol, "--shape", "INPUT0:4", "--request-count", "20"]
    # The one window of --request-count holds every request: each counted once.
    for model, extra, calls in (
        ("pipeline", [], 2),  # the ensemble's steps, from its config
        ("bls", ["--bls-composing-models", "identity"], 2),
    ):
        text = ok_run("-m", model, *base, *extra)
        assert "\n  Composing models: \n  identity, version: 1\n" in text, text
        top, identity = _counts(text)
        assert (top, identity) == (20, 20 * calls), text
        # The measured model's line totals its composing models' time.
        assert re.search(r"queue \d+ usec \+ compute \d+ usec\)", text), text
    text = ok_run("-m", "bls", *base)  # without the flag: no composing section
    assert "Composing models" not in text and _counts(text) == [20]
    failed = one_error_line(
        perf("-m", "bls", *base, "--bls-composing-models", "identity,nope")
    )
    assert "composing model 'nope'" in failed


@pytest.mark.skipif(
    reference_command() is None, reason="TRITONX_REFERENCE_CMD not set (real Triton)"
)
def test_composing_models_and_trace_flags_on_the_real_triton(tmp_path: Path) -> None:
    """Triton 2.51 answers the same statistics and trace calls: the same report."""
    repo = tmp_path / "repo"
    write_model(repo, "identity", IDENTITY, ECHO_MODEL)
    write_model(repo, "bls", BLS_CHAIN_CONFIG, IDENTITY_TWICE)
    (repo / "pipeline" / "1").mkdir(parents=True)
    (repo / "pipeline" / "config.pbtxt").write_text(PIPELINE)
    trace = f"triton,file={tmp_path / 'trace.json'}"
    with run_reference([repo], "--trace-config", trace) as triton:
        for protocol, u in (("grpc", triton.grpc_url), ("http", triton.http_url)):
            base = ["-u", u, "-i", protocol, "--shape", "INPUT0:4"]
            for model, extra in (
                ("pipeline", []),
                ("bls", ["--bls-composing-models", "identity"]),
            ):
                text = ok_run("-m", model, *base, "--request-count", "20", *extra)
                assert "\n  Composing models: \n  identity, version: 1\n" in text
                assert _counts(text) == [20, 40], text
            ok_run(
                "-m", "identity", *base, "--trace-level", "TIMESTAMPS",
                "--trace-rate", "1", "--trace-count", "5", *SHORT,
            )  # fmt: skip
            settings = _trace_settings(triton, "identity")
            assert settings["trace_level"] == ["TIMESTAMPS"], settings
            assert settings["trace_rate"] == "1", settings


def _trace_settings(server: RunningServer, model: str) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
    conn.request("GET", f"/v2/models/{model}/trace/setting")
    settings: dict[str, object] = json.loads(conn.getresponse().read())
    conn.close()
    return settings


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_trace_flags_set_the_models_tracing(
    server: RunningServer, protocol: str
) -> None:
    u = server.grpc_url if protocol == "grpc" else server.http_url
    before = _trace_settings(server, "identity")
    assert before["trace_level"] == ["OFF"]
    ok_run(
        "-m", "identity", "-u", u, "-i", protocol, "--shape", "INPUT0:4",
        "--trace-level", "TIMESTAMPS", "--trace-rate", "1", "--trace-count", "5",
        "--log-frequency", "0", *SHORT,
    )  # fmt: skip
    after = _trace_settings(server, "identity")
    assert after["trace_level"] == ["TIMESTAMPS"], after
    assert (after["trace_rate"], after["trace_count"]) == ("1", "0"), after
    # Five requests were traced (trace_count counts down to 0); the other models
    # keep the server's settings.
    assert _trace_settings(server, "slow")["trace_level"] == ["OFF"]
    # Back to OFF for the next run, through the tool itself.
    ok_run(
        "-m", "identity", "-u", u, "-i", protocol, "--shape", "INPUT0:4",
        "--trace-level", "OFF", "--trace-count", "-1", *SHORT,
    )  # fmt: skip
    assert _trace_settings(server, "identity")["trace_level"] == ["OFF"]


def test_flag_refusals_and_version(server: RunningServer) -> None:
    g = ["-m", "identity", "-u", server.grpc_url, "-i", "grpc", "--shape", "INPUT0:4"]
    cases = {
        "level": (["--trace-level", "LOUD"], "--trace-level 'LOUD'"),
        "rate": (["--trace-rate", "0"], "--trace-rate must be > 0"),
        # The server refuses what its network API may not change, as Triton does.
        "trace file": (["--trace-file", "/tmp/x.json"], "trace file location"),
        "service kind": (
            ["--service-kind", "openai"],
            "Must supply --input-data for OpenAI service kind.",
        ),
        "binary without threshold": (
            ["--binary-search", "--concurrency-range", "1:4"],
            "latency threshold can not be 0",
        ),
    }
    for name, (args, expected) in cases.items():
        line = one_error_line(perf(*g, *args, *SHORT, timeout=60))
        assert expected in line, (name, line)
    version = perf("--version")
    assert version.returncode == 0 and version.stdout.startswith("tritonx-perf ")
