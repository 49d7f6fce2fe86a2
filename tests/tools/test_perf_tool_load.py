"""tritonx-perf's load modes end to end against a real tritonx server on loopback:
--request-count and --warmup-request-count, --async (many requests in flight per
thread, closed loop and at a rate), JSON tensors over HTTP and --collect-metrics."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from perfutil import (
    GENERATED,
    GENERATED_MODEL,
    IDENTITY,
    SLEEPY,
    SLEEPY_MODEL,
    STRINGS,
    STRINGS_MODEL,
    check_row,
    ok_run,
    perf,
    read_csv,
    success_count,
    url,
    write_model,
)
from serverutil import RunningServer, free_port, run_server
from testmodels import ECHO_MODEL

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    repo = tmp_path_factory.mktemp("perf_load_repo")
    write_model(repo, "identity", IDENTITY, ECHO_MODEL)
    write_model(repo, "strings", STRINGS, STRINGS_MODEL)
    write_model(repo, "sleepy", SLEEPY, SLEEPY_MODEL)
    write_model(repo, "generated", GENERATED, GENERATED_MODEL)
    with run_server(repo) as running:
        yield running


def test_request_count_warmup_async_json_tensors_and_metrics(
    server: RunningServer, tmp_path: Path
) -> None:
    """--request-count 40 after --warmup-request-count 7: the server sees 47, the
    report and the export 40. One worker thread keeps 4 requests in flight
    (--async --max-threads 1), tensors travel as JSON both ways, and the server's
    Prometheus endpoint gives the step's model counters and process usage."""
    out = tmp_path / "perf.csv"
    export = tmp_path / "profile.json"
    before = success_count(server, "identity")
    text = ok_run(
        "-m", "identity", "-u", server.http_url, "-i", "http", "--shape", "INPUT0:8",
        "--concurrency-range", "4", "--async", "--max-threads", "1",
        "--request-count", "40", "--warmup-request-count", "7",
        "--input-tensor-format", "json", "--output-tensor-format", "json",
        "--collect-metrics", "--metrics-url", server.metrics_url,
        "--metrics-interval", "100", "-f", str(out), "--verbose-csv",
        "--profile-export-file", str(export),
    )  # fmt: skip
    assert success_count(server, "identity") - before == 47
    assert "Request count: 40\n" in text
    requests = json.loads(export.read_text())["experiments"][0]["requests"]
    assert len(requests) == 40 and all(r["success"] for r in requests)
    # Requests overlapped although one thread sent them all.
    spans = sorted((r["timestamp"], r["end_timestamp"]) for r in requests)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))
    assert "Server Prometheus Metrics" in text
    assert "requests succeeded 40," in text  # the measured step alone
    assert re.search(r"Server process: CPU \d+%, max RSS \d+ MB", text), text
    header, rows = read_csv(out)
    assert header[-4:] == [
        "Avg GPU Utilization",
        "Avg GPU Power Usage",
        "Max GPU Memory Usage",
        "Total GPU Memory",
    ]
    check_row(rows[0])

    # gRPC: the calls of one thread overlap on its completion queue.
    before = success_count(server, "identity")
    ok_run(
        "-m", "identity", "-u", server.grpc_url, "-i", "grpc", "--shape", "INPUT0:8",
        "--concurrency-range", "3", "--async", "--max-threads", "1",
        "--request-count", "30", "--warmup-request-count", "3",
        "--profile-export-file", str(export),
    )  # fmt: skip
    assert success_count(server, "identity") - before == 33
    requests = json.loads(export.read_text())["experiments"][0]["requests"]
    spans = sorted((r["timestamp"], r["end_timestamp"]) for r in requests)
    assert len(spans) == 30 and any(b[0] < a[1] for a, b in itertools.pairwise(spans))

    # BYTES as JSON strings: the strings model fails any request whose strings
    # are not the data file's, so success means they arrived intact.
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"data": [{"INPUT0": ["hello", "été"]}]}))
    ok_run(
        "-m", "strings", "-u", server.http_url, "--input-data", str(data),
        "--input-tensor-format", "json", "--output-tensor-format", "json",
        "--request-count", "10",
    )  # fmt: skip


def test_async_request_rate_is_not_capped_by_threads(
    server: RunningServer, tmp_path: Path
) -> None:
    """200 requests/s on a model that serves 50/s: one worker thread (the default
    at a rate is async) keeps sending on schedule, so requests pile up in flight.
    An unreachable metrics endpoint is a warning, not a failure."""
    export = tmp_path / "profile.json"
    dead = f"127.0.0.1:{free_port()}"
    for protocol in ("grpc", "http"):
        result = perf(
            "-m", "sleepy", "-u", url(server, protocol), "-i", protocol,
            "--request-rate-range", "200", "--max-threads", "1",
            "--request-count", "20", "--profile-export-file", str(export),
            "--collect-metrics", "--metrics-url", dead,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        warnings = result.stderr.strip().splitlines()
        assert len(warnings) == 1 and "cannot read metrics" in warnings[0]
        requests = json.loads(export.read_text())["experiments"][0]["requests"]
        assert len(requests) == 20
        starts = sorted(r["timestamp"] for r in requests)
        ends = sorted(r["end_timestamp"] for r in requests)
        # The 5th request was sent before the 2nd answer came back.
        assert starts[4] < ends[1], protocol


@pytest.mark.parametrize("data", ["zero", "random"])
def test_generated_data_and_string_length(server: RunningServer, data: str) -> None:
    """--input-data zero|random and --string-length reach the model as asked (it
    fails any request whose data is not what the flags say)."""
    for protocol in ("grpc", "http"):
        before = success_count(server, "generated")
        ok_run(
            "-m", "generated", "-u", url(server, protocol), "-i", protocol,
            "--input-data", data, "--string-length", "7", "--request-count", "8",
        )  # fmt: skip
        assert success_count(server, "generated") - before == 8
