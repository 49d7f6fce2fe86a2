"""Trace files of tritonx and the real Triton for the same requests (runs when
TRITONX_REFERENCE_CMD is set): per trace, the timestamp names and their counts,
the tensors written and the parent's model, over HTTP (both engines), gRPC,
gRPC streams (decoupled and not), BLS and the SSE generate stream."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from serverutil import (
    REFERENCE_STUB_UNHEALTHY,
    RunningServer,
    needs_reference,
    run_reference,
    run_server,
)
from traceutil import (
    build_stream_repo,
    generate_stream,
    grpc_infer,
    grpc_stream,
    http_infer,
    http_infer_bls,
    summary,
)
from tritonclient.utils import InferenceServerException

pytestmark = needs_reference

TRACE_ALL = (
    "--trace-config=rate=1",
    "--trace-config=level=TIMESTAMPS",
    "--trace-config=level=TENSORS",
)


def observe(server: AbstractContextManager[RunningServer]) -> None:
    with server as running:
        http_infer(running.http_url, "add_one", "h1")
        grpc_infer(running.grpc_url, "add_one", "g1")
        grpc_stream(running.grpc_url, [("repeat", "s1", 3), ("add_one", "s2", 1)])
        http_infer_bls(running.http_url)
        http_infer(running.http_url, "pipeline", "p1")
        generate_stream(running.http_url, "repeat", "e1")
        generate_stream(running.http_url, "add_one", "e2", "generate")


def observe_reference(repo: Path, out: Path) -> None:
    """Triton 2.51 sometimes calls its BLS stub unhealthy on a loaded machine:
    it gives the stub's health mutex one second and answers 500 when that
    lapses. That is the reference's fault, so a fresh reference gets another try
    (with a fresh trace file); any other error fails the test at once."""
    for attempt in range(3):
        out.unlink(missing_ok=True)
        args = (f"--trace-config=triton,file={out}", *TRACE_ALL)
        try:
            observe(run_reference([repo], *args))
            return
        except InferenceServerException as error:
            if not REFERENCE_STUB_UNHEALTHY.search(str(error)) or attempt == 2:
                raise


def test_trace_files_match_reference(tmp_path: Path) -> None:
    repo = build_stream_repo(tmp_path / "repo")
    files = {}
    for who in ("native", "python", "reference"):
        out = tmp_path / f"{who}.json"
        args = (f"--trace-config=triton,file={out}", *TRACE_ALL)
        if who == "reference":
            observe_reference(repo, out)
        else:
            observe(run_server(repo, f"--http-engine={who}", *args))
        files[who] = out
    theirs = summary(files["reference"])
    # Deliberate difference: on the SSE stream Triton records an
    # INFER_RESPONSE_COMPLETE per response callback (FINAL included) and writes
    # each response's send pair with 0 for both times; tritonx records one
    # INFER_RESPONSE_COMPLETE, as on every other endpoint, and the real times.
    sse: dict[str, Any] = theirs[("repeat", "e1", "")]["stamps"]
    assert sse["INFER_RESPONSE_COMPLETE"] == 4
    sse["INFER_RESPONSE_COMPLETE"] = 1
    assert summary(files["native"]) == theirs
    assert summary(files["python"]) == theirs


def test_opentelemetry_spans_match_reference(tmp_path: Path) -> None:
    """The span tree (names, parents, events, attribute names) of each request."""
    pytest.importorskip("opentelemetry.sdk")
    from test_trace_otel import Collector, span_trees

    repo = build_stream_repo(tmp_path / "repo")
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    trees = {}
    for who in ("native", "reference"):
        collector = Collector()
        args = (
            "--trace-config=mode=opentelemetry",
            f"--trace-config=opentelemetry,url={collector.url}",
            "--trace-config=opentelemetry,bsp_schedule_delay=50",
            "--trace-config=rate=1",
            "--trace-config=level=TIMESTAMPS",
        )
        server = (
            run_reference([repo], *args)
            if who == "reference"
            else run_server(repo, *args)
        )
        with server as running:
            http_infer(running.http_url, "add_one", "h1", {"traceparent": parent})
            grpc_infer(running.grpc_url, "pipeline", "g1")
            grpc_stream(running.grpc_url, [("repeat", "s1", 3)])
            http_infer_bls(running.http_url)
        # Triton exports on its batch schedule, also after shutdown began.
        deadline = time.monotonic() + 30
        while len(span_trees(collector)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        collector.server.shutdown()
        trees[who] = span_trees(collector)
    assert trees["native"] == trees["reference"]
