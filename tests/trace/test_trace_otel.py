"""OpenTelemetry mode: spans exported over OTLP/HTTP to a collector on loopback
(in this test process), with Triton's span tree and a propagated traceparent."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from serverutil import run_server
from traceutil import (
    build_repo,
    build_stream_repo,
    grpc_infer,
    http_infer,
    http_infer_bls,
)

trace_service = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="the otel extra is not installed",
)
pytest.importorskip("opentelemetry.sdk")


class Collector:
    """Collects every span posted to /v1/traces: protobuf (tritonx's exporter)
    into ``spans``, OTLP/JSON (Triton's) into ``json_spans``."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.json_spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if "json" in self.headers.get("Content-Type", ""):
                    with collector.lock:
                        for resource in json.loads(body)["resourceSpans"]:
                            for scope in resource["scopeSpans"]:
                                collector.json_spans.extend(scope["spans"])
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = trace_service.ExportTraceServiceRequest()
                request.ParseFromString(body)
                with collector.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            collector.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def span_trees(collector: Collector) -> dict[str, list[tuple[Any, ...]]]:
    """Per trace (keyed by its request id): each span as (name, parent's name,
    event names, attribute names), from either exporter's spans."""
    spans = [
        {
            "trace": s.trace_id.hex(),
            "id": s.span_id.hex(),
            "parent": s.parent_span_id.hex(),
            "name": s.name,
            "events": [e.name for e in s.events],
            "attrs": {a.key: a.value.string_value for a in s.attributes},
        }
        for s in collector.spans
    ]
    spans += [
        {
            "trace": s["traceId"],
            "id": s["spanId"],
            "parent": s.get("parentSpanId", ""),
            "name": s["name"],
            "events": [e["name"] for e in s.get("events", [])],
            "attrs": {
                a["key"]: a["value"].get("stringValue", "")
                for a in s.get("attributes", [])
            },
        }
        for s in collector.json_spans
    ]
    names = {s["id"]: s["name"] for s in spans}
    trees: dict[str, list[tuple[Any, ...]]] = {}
    for trace in {s["trace"] for s in spans}:
        group = [s for s in spans if s["trace"] == trace]
        key = next(
            (
                s["attrs"].get("triton.request_id", "")
                for s in group
                if names.get(s["parent"]) == "InferRequest"
            ),
            None,
        )
        if key is None:  # its spans are not all in yet
            continue
        trees[key] = sorted(
            (
                s["name"],
                names.get(s["parent"], ""),
                tuple(sorted(s["events"])),
                tuple(sorted(s["attrs"])),
            )
            for s in group
        )
    return trees


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


@pytest.mark.parametrize("engine", ["native", "python"])
def test_spans_exported_with_parent_context(
    tmp_path: Path, collector: Collector, engine: str
) -> None:
    repo = build_repo(tmp_path / "repo")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    http_trace_id = "0af7651916cd43dd8448eb211c80319c"
    http_parent = f"00-{http_trace_id}-b7ad6b7169203331-01"
    with run_server(
        repo,
        f"--http-engine={engine}",
        "--trace-config=mode=opentelemetry",
        f"--trace-config=opentelemetry,url={collector.url}",
        "--trace-config=opentelemetry,bsp_schedule_delay=50",
        "--trace-config=rate=1",
        "--trace-config=level=TIMESTAMPS",
    ) as server:
        http_infer(server.http_url, "add_one", "h1")
        http_infer(
            server.http_url, "add_one", "h2", headers={"traceparent": http_parent}
        )
        grpc_infer(server.grpc_url, "pipeline", "g1", headers={"traceparent": parent})
    # Shutting down flushed the exporter.
    spans = collector.spans
    names = sorted(span.name for span in spans)
    assert names.count("InferRequest") == 3
    assert names.count("compute") == 4  # add_one twice, the pipeline's two steps
    over_http = [s for s in spans if s.trace_id.hex() == http_trace_id]
    assert sorted(s.name for s in over_http) == ["InferRequest", "add_one", "compute"]
    (http_root,) = [s for s in over_http if s.name == "InferRequest"]
    assert http_root.parent_span_id.hex() == "b7ad6b7169203331"
    # The frontend's stamps are the root span's events, as in Triton.
    assert {e.name for e in http_root.events} == {
        "HTTP_RECV_START",
        "HTTP_RECV_END",
        "INFER_RESPONSE_COMPLETE",
        "HTTP_SEND_START",
        "HTTP_SEND_END",
    }
    (http_model,) = [s for s in over_http if s.name == "add_one"]
    assert {e.name for e in http_model.events} == {
        "REQUEST_START",
        "QUEUE_START",
        "REQUEST_END",
    }
    propagated = [s for s in spans if s.trace_id.hex() == trace_id]
    assert {s.name for s in propagated} == {
        "InferRequest",
        "pipeline",
        "add_one",
        "double",
        "compute",
    }
    (root,) = [s for s in propagated if s.name == "InferRequest"]
    assert root.parent_span_id.hex() == "00f067aa0ba902b7"
    by_id = {s.span_id: s for s in propagated}
    (ensemble,) = [s for s in propagated if s.name == "pipeline"]
    assert ensemble.parent_span_id == root.span_id
    for step in ("add_one", "double"):
        (span,) = [s for s in propagated if s.name == step]
        assert by_id[span.parent_span_id].name == "pipeline"
    events = {e.name for s in propagated if s.name == "compute" for e in s.events}
    assert events == {
        "COMPUTE_START",
        "COMPUTE_INPUT_END",
        "COMPUTE_OUTPUT_START",
        "COMPUTE_END",
    }


def test_bls_children_are_spans_under_their_parent(
    tmp_path: Path, collector: Collector
) -> None:
    repo = build_stream_repo(tmp_path / "repo")
    with run_server(
        repo,
        "--trace-config=mode=opentelemetry",
        f"--trace-config=opentelemetry,url={collector.url}",
        "--trace-config=opentelemetry,bsp_schedule_delay=50",
        "--trace-config=rate=1",
        "--trace-config=level=TIMESTAMPS",
    ) as server:
        http_infer_bls(server.http_url)
    spans = collector.spans
    by_id = {s.span_id: s for s in spans}
    assert sorted(s.name for s in spans if s.name != "compute") == [
        "InferRequest",
        "add_one",
        "bls",
        "repeat",
    ]
    for child in ("add_one", "repeat"):
        (span,) = [s for s in spans if s.name == child]
        assert by_id[span.parent_span_id].name == "bls"
        assert "INFER_RESPONSE_COMPLETE" not in {e.name for e in span.events}
