"""tritonx-perf end to end: the real CLI against a real tritonx server on loopback.

Every run is short (count windows of a few dozen requests, stability band wide
open) so the whole module stays within seconds of CI time; what is checked is
what the numbers must satisfy whatever the machine's speed: the run succeeds,
the CSV has perf_analyzer's columns, counts add up, percentiles are ordered.
"""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from perfutil import (
    IDENTITY,
    PA_COLUMNS,
    SHORT,
    STRINGS,
    STRINGS_MODEL,
    VERBOSE_COLUMNS,
    check_row,
    check_sequences,
    ok_run,
    one_error_line,
    perf,
    read_csv,
    url,
    write_model,
    write_sequence_log_model,
)
from serverutil import (
    RunningServer,
    free_port,
    reference_command,
    run_reference,
    run_server,
    server_env,
)
from testmodels import ECHO_MODEL, REPEAT_CONFIG, REPEAT_MODEL

pytestmark = pytest.mark.timeout(180)


def _cuda_shm_available() -> bool:
    """tritonclient's CUDA shared memory imports (cuda-python is installed); where
    it does, tests/gpu covers --shared-memory cuda."""
    try:
        import tritonclient.utils.cuda_shared_memory  # noqa: F401
    except (ImportError, RuntimeError):
        return False
    return True


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    repo = tmp_path_factory.mktemp("perf_repo")
    write_model(repo, "identity", IDENTITY, ECHO_MODEL)
    write_model(repo, "strings", STRINGS, STRINGS_MODEL)
    write_model(repo, "repeat", REPEAT_CONFIG, REPEAT_MODEL)
    with run_server(repo) as running:
        yield running


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_concurrency_sweep_csv_and_server_breakdown(
    server: RunningServer, protocol: str, tmp_path: Path
) -> None:
    out = tmp_path / "perf.csv"
    export = tmp_path / "profile.json"
    text = ok_run(
        "-m",
        "identity",
        "-x",
        "1",
        "-u",
        url(server, protocol),
        "-i",
        protocol,
        "--shape",
        "INPUT0:16",
        "--concurrency-range",
        "1:3:2",
        "-f",
        str(out),
        "--verbose-csv",
        "--profile-export-file",
        str(export),
        *SHORT,
    )
    assert "Request concurrency: 1" in text and "Request concurrency: 3" in text
    assert "Avg request latency" in text and "compute infer" in text
    # Not a terminal: plain text, no progress display.
    assert "\x1b[" not in text and "window 1/" not in text
    header, rows = read_csv(out)
    assert header == ["Concurrency", *PA_COLUMNS, *VERBOSE_COLUMNS]
    assert sorted(int(r["Concurrency"]) for r in rows) == [1, 3]
    for row in rows:
        check_row(row)
        # The server answered these requests: its side of the breakdown is there.
        assert int(row["Server Compute Infer"]) > 0
    document = json.loads(export.read_text())
    experiments = document["experiments"]
    assert [e["experiment"] for e in experiments] == [
        {"mode": "concurrency", "value": 1},
        {"mode": "concurrency", "value": 3},
    ]
    counts = [int(n) for n in re.findall(r"Request count: (\d+)", text)]
    by_concurrency = {int(r["Concurrency"]): r for r in rows}
    for experiment, count in zip(experiments, counts, strict=True):
        requests = experiment["requests"]
        # Three count windows of 30 completions each; a request belongs to the
        # window it ended in (perf_analyzer's rule).
        assert len(requests) >= 3 * (30 - 3)
        bounds = experiment["window_boundaries"]
        assert bounds == sorted(bounds) and len(bounds) == 4
        # The report is made of exactly these requests: counts and rate add up.
        assert count == len(requests)
        row = by_concurrency[experiment["experiment"]["value"]]
        rate = len(requests) / ((bounds[-1] - bounds[0]) / 1e9)
        assert abs(float(row["Inferences/Second"]) - rate) <= 0.01 * rate
        for request in requests:
            assert request["success"]
            assert len(request["response_timestamps"]) == 1
            # Ended inside the windows, wherever it started.
            assert request["timestamp"] <= request["end_timestamp"]
            assert bounds[0] < request["end_timestamp"] <= bounds[-1]
    # Concurrency 1 never overlaps requests.
    first = sorted(experiments[0]["requests"], key=lambda r: r["timestamp"])
    assert all(
        a["end_timestamp"] <= b["timestamp"] for a, b in itertools.pairwise(first)
    )


def test_latency_threshold_stops_the_sweep_and_percentile_columns(
    server: RunningServer, tmp_path: Path
) -> None:
    out = tmp_path / "perf.csv"
    text = ok_run(
        "-m",
        "identity",
        "-u",
        server.grpc_url,
        "-i",
        "grpc",
        "--shape",
        "INPUT0:4",
        "--concurrency-range",
        "1:3",
        "--latency-threshold",
        "0.001",
        "--percentile",
        "95",
        "-f",
        str(out),
        "--verbose-csv",
        *SHORT,
    )
    # No request takes under a microsecond: the first step is the last.
    assert "Measured latency went over the set limit of 0.001 msec" in text
    assert "Request concurrency: 2" not in text
    header, rows = read_csv(out)
    # perf_analyzer's layout with --percentile: no Avg latency column.
    assert header == ["Concurrency", *PA_COLUMNS, "request/response", "response wait"]
    assert [r["Concurrency"] for r in rows] == ["1"]


def test_progress_display_on_a_terminal(server: RunningServer) -> None:
    """On a terminal (a pty here) a live progress bar names the window running."""
    master, slave = pty.openpty()
    env = server_env()
    env["TERM"] = "xterm"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "tritonx.tools.perf", "-m", "identity",
            "-u", server.grpc_url, "-i", "grpc", "--shape", "INPUT0:4",
            "--measurement-interval", "500", "--max-trials", "3",
            "--stability-percentage", "100",
        ],
        stdout=slave,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 0, errors
    output = b"".join(chunks).decode(errors="replace")
    assert "Concurrency 1 - window 1/3" in output, output
    assert "Request concurrency: 1" in output


def test_bytes_from_a_json_data_file_with_batching(
    server: RunningServer, tmp_path: Path
) -> None:
    data = tmp_path / "data.json"
    data.write_text(
        json.dumps(
            {
                "data": [
                    {"INPUT0": ["hello", "wide world"]},
                    {"INPUT0": {"content": ["été"], "shape": [1]}},
                    {"INPUT0": {"b64": "aGVsbG8=", "shape": [1]}},
                ]
            }
        )
    )
    out = tmp_path / "perf.csv"
    for protocol in ("grpc", "http"):
        ok_run(
            "-m",
            "strings",
            "-u",
            url(server, protocol),
            "-i",
            protocol,
            "-b",
            "2",
            "--input-data",
            str(data),
            "-f",
            str(out),
            "--verbose-csv",
            *SHORT,
        )
        _, rows = read_csv(out)
        check_row(rows[0])


def test_request_rate_poisson_time_windows(
    server: RunningServer, tmp_path: Path
) -> None:
    """Time windows: each lasts 1.2 x --measurement-interval, as perf_analyzer's
    (a lower bound on the tool's own sleep, not a timing target)."""
    out = tmp_path / "perf.csv"
    export = tmp_path / "profile.json"
    text = ok_run(
        "-m", "identity", "-u", server.http_url, "--shape", "INPUT0:4",
        "--request-rate-range", "100", "--request-distribution", "poisson",
        "--measurement-interval", "250", "--max-trials", "3",
        "--stability-percentage", "100", "-f", str(out), "--verbose-csv",
        "--profile-export-file", str(export),
    )  # fmt: skip
    assert "Request Rate: 100" in text
    assert "Measurement window: 250 msec" in text
    header, rows = read_csv(out)
    assert header[0] == "Request Rate"
    check_row(rows[0])
    experiment = json.loads(export.read_text())["experiments"][0]
    bounds = experiment["window_boundaries"]
    assert len(bounds) == 4
    assert all(b - a >= 300_000_000 for a, b in itertools.pairwise(bounds))
    assert experiment["experiment"] == {"mode": "request_rate", "value": 100.0}


def test_streaming_decoupled_responses(server: RunningServer, tmp_path: Path) -> None:
    """Async streaming (perf_analyzer's default): one thread keeps both requests
    in flight on one stream; each gets its 3 responses."""
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"data": [{"COUNT": [3], "MODE": [0]}]}))
    out = tmp_path / "perf.csv"
    export = tmp_path / "profile.json"
    text = ok_run(
        "-m",
        "repeat",
        "-u",
        server.grpc_url,
        "-i",
        "grpc",
        "--streaming",
        "--input-data",
        str(data),
        "--concurrency-range",
        "2",
        "--max-threads",
        "1",
        "-f",
        str(out),
        "--verbose-csv",
        "--profile-export-file",
        str(export),
        *SHORT,
    )
    assert "Avg responses per request: 3" in text
    assert "Using asynchronous calls for inference" in text
    header, rows = read_csv(out)
    assert header[: len(PA_COLUMNS) + 4] == [
        "Concurrency",
        *PA_COLUMNS,
        *VERBOSE_COLUMNS,
    ]
    assert float(rows[0]["Avg Responses Per Request"]) == 3
    assert 0 < int(rows[0]["Avg First Response Time"]) <= int(rows[0]["Avg latency"])
    requests = json.loads(export.read_text())["experiments"][0]["requests"]
    for request in requests:
        times = request["response_timestamps"]
        assert len(times) == 3 and times == sorted(times)
        assert (
            request["timestamp"] <= times[0] and times[-1] <= request["end_timestamp"]
        )
    spans = sorted((r["timestamp"], r["end_timestamp"]) for r in requests)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def test_decoupled_without_streaming_is_refused(server: RunningServer) -> None:
    result = perf("-m", "repeat", "-u", server.grpc_url, "-i", "grpc", *SHORT)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("measure it with --streaming -i grpc")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_system_shared_memory(
    server: RunningServer, protocol: str, tmp_path: Path
) -> None:
    before = set(os.listdir("/dev/shm"))
    out = tmp_path / "perf.csv"
    ok_run(
        "-m",
        "identity",
        "-u",
        url(server, protocol),
        "-i",
        protocol,
        "--shape",
        "INPUT0:64",
        "--shared-memory",
        "system",
        "--output-shared-memory-size",
        "256",
        "-f",
        str(out),
        "--verbose-csv",
        *SHORT,
    )
    check_row(read_csv(out)[1][0])
    # Everything it registered and created is gone again.
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
    conn.request("GET", "/v2/systemsharedmemory/status")
    assert json.loads(conn.getresponse().read()) == []
    conn.close()
    left = set(os.listdir("/dev/shm")) - before
    assert not [n for n in left if n.startswith("tritonx_perf_")]


def test_bad_inputs_end_with_one_line(server: RunningServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [{"INPUT0": [1, 2,')
    short_data = tmp_path / "short.json"
    short_data.write_text(
        json.dumps({"data": [{"INPUT0": {"content": [1, 2], "shape": [3]}}]})
    )
    binary = tmp_path / "binary.json"
    binary.write_text(json.dumps({"data": [{"INPUT0": {"b64": "//4=", "shape": [1]}}]}))
    rejected = tmp_path / "rejected.json"
    rejected.write_text(json.dumps({"data": [{"INPUT0": ["nope"]}]}))
    dead = f"127.0.0.1:{free_port()}"
    g = ["-u", server.grpc_url, "-i", "grpc"]
    cases = {
        "unknown model": (["-m", "nope", *g], "unknown model"),
        "unreachable grpc": (["-m", "identity", "-u", dead, "-i", "grpc"], "failed to"),
        "unreachable http": (["-m", "identity", "-u", dead], "failed to"),
        "malformed data": (
            ["-m", "identity", *g, "--input-data", str(broken)],
            "not valid JSON",
        ),
        "short data": (
            ["-m", "identity", *g, "--input-data", str(short_data)],
            "do not fill",
        ),
        "missing data file": (
            ["-m", "identity", *g, "--input-data", str(tmp_path / "x")],
            "cannot read",
        ),
        "dynamic shape": (["-m", "identity", *g], "provide shapes"),
        "batch too big": (
            ["-m", "identity", *g, "--shape", "INPUT0:2", "-b", "9"],
            "batch size",
        ),
        "zero concurrency": (
            ["-m", "identity", *g, "--concurrency-range", "0"],
            "start",
        ),
        "bad range": (["-m", "identity", *g, "--concurrency-range", "a:b"], "integers"),
        "bad percentile": (["-m", "identity", *g, "--percentile", "200"], "percentile"),
        "bad protocol": (["-m", "identity", "-i", "ftp"], "protocol"),
        "streaming over http": (
            ["-m", "repeat", "-u", server.http_url, "--streaming"],
            "gRPC",
        ),
        "bad shape": (["-m", "identity", *g, "--shape", "INPUT0:x"], "integers"),
        "not a number": (["-m", "identity", *g, "-b", "two"], "invalid int"),
        "json over grpc": (
            ["-m", "identity", *g, "--input-tensor-format", "json"],
            "need -i http",
        ),
        "async and sync": (["-m", "identity", *g, "--async", "--sync"], "both"),
        "negative request count": (
            ["-m", "identity", *g, "--request-count", "-1"],
            "--request-count must be >= 0",
        ),
        **(
            {}
            if _cuda_shm_available()
            else {
                "cuda shared memory without cuda": (
                    ["-m", "identity", *g, "--shared-memory", "cuda"],
                    "--shared-memory cuda needs a CUDA GPU",
                )
            }
        ),
        # The model fails the request: on an async stream too, one line.
        "failing requests on a stream": (
            ["-m", "strings", *g, "--streaming", "--input-data", str(rejected)],
            "request(s) failed: unexpected",
        ),
        "bytes that are not text as json": (
            [
                "-m",
                "strings",
                "-u",
                server.http_url,
                "--input-data",
                str(binary),
                "--input-tensor-format",
                "json",
            ],
            "not UTF-8",
        ),
    }
    for name, (args, expected) in cases.items():
        line = one_error_line(perf(*args, *SHORT, timeout=60))
        assert expected in line, (name, line)


@pytest.mark.skipif(
    reference_command() is None, reason="TRITONX_REFERENCE_CMD not set (real Triton)"
)
def test_against_the_real_triton(tmp_path: Path) -> None:
    """The tool is a KServe V2 client, not a tritonx one: Triton 2.51 is measured the
    same way (metadata, config, statistics and both protocols)."""
    repo = tmp_path / "repo"
    write_model(repo, "identity", IDENTITY, ECHO_MODEL)
    log = tmp_path / "requests.log"
    write_sequence_log_model(repo, "seqlog", log)
    out = tmp_path / "perf.csv"
    with run_reference([repo]) as triton:
        # Many sequences in flight from one thread (unary, and on one stream):
        # Triton's sequence batcher takes them whole (it fails a request whose
        # sequence did not START).
        for protocol, extra in (("grpc", []), ("http", []), ("grpc", ["--streaming"])):
            ok_run(
                "-m", "seqlog", "-u", url(triton, protocol), "-i", protocol,
                "--concurrency-range", "4", "--max-threads", "1",
                "--sequence-length", "4", "--request-count", "40", *extra,
            )  # fmt: skip
        ids, most = check_sequences(log.read_text().splitlines())
        assert len(ids) >= 12 and most >= 2
        for protocol in ("grpc", "http"):
            text = ok_run(
                "-m",
                "identity",
                "-u",
                url(triton, protocol),
                "-i",
                protocol,
                "--shape",
                "INPUT0:16",
                "-f",
                str(out),
                "--verbose-csv",
                *SHORT,
            )
            assert "Avg request latency" in text
            row = read_csv(out)[1][0]
            check_row(row)
            assert int(row["Server Compute Infer"]) > 0
        # JSON tensors, many requests in flight per thread, a counted step after a
        # warm-up, and Triton's Prometheus endpoint (which has no process_* families).
        text = ok_run(
            "-m", "identity", "-u", triton.http_url, "--shape", "INPUT0:16",
            "--async", "--max-threads", "1", "--concurrency-range", "3",
            "--request-count", "30", "--warmup-request-count", "5",
            "--input-tensor-format", "json", "--output-tensor-format", "json",
            "--collect-metrics", "--metrics-url", triton.metrics_url,
        )  # fmt: skip
        assert "Request count: 30\n" in text
        assert "requests succeeded 30," in text
        assert "Server process:" not in text
