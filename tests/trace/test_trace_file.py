"""Triton-mode tracing through the wire: which requests are traced (rate, count,
per-model settings), the timestamps written for them in Triton's trace file format
and their order, ensemble children, log-frequency file rotation and tensors."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from serverutil import run_server
from traceutil import build_repo, grpc_infer, http_infer, read_traces, wait_for_file

CORE = [
    "REQUEST_START",
    "QUEUE_START",
    "COMPUTE_START",
    "COMPUTE_INPUT_END",
    "COMPUTE_OUTPUT_START",
    "COMPUTE_END",
    "REQUEST_END",
]


def post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{url}{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def get(url: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{url}{path}") as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def in_order(stamps: list[tuple[str, int]], names: list[str]) -> bool:
    seen = dict(stamps)
    values = [seen[name] for name in names]
    return values == sorted(values)


@pytest.mark.parametrize("engine", ["native", "python"])
def test_every_request_traced_with_ordered_timestamps(
    tmp_path: Path, engine: str
) -> None:
    repo = build_repo(tmp_path / "repo")
    out = tmp_path / "trace.json"
    with run_server(
        repo,
        f"--http-engine={engine}",
        f"--trace-config=triton,file={out}",
        "--trace-config=rate=1",
        "--trace-config=level=TIMESTAMPS",
    ) as server:
        http_infer(server.http_url, "add_one", "h1")
        grpc_infer(server.grpc_url, "add_one", "g1")
    assert out.exists(), server.log_text()
    traces = {t["request_id"]: t for t in read_traces(out).values()}
    assert set(traces) == {"h1", "g1"}
    for request_id, protocol in (("h1", "HTTP"), ("g1", "GRPC")):
        trace = traces[request_id]
        assert trace["model_name"] == "add_one"
        assert trace["model_version"] == 1
        assert trace["parent_id"] == 0
        names = [name for name, _ in trace["stamps"]]
        for name in CORE:
            assert names.count(name) == 1, (name, names)
        assert in_order(trace["stamps"], CORE)
        recv = ["HTTP_RECV_START", "HTTP_RECV_END"]
        send = ["HTTP_SEND_START", "HTTP_SEND_END"]
        if protocol == "GRPC":
            recv = ["GRPC_WAITREAD_START", "GRPC_WAITREAD_END"]
            send = ["GRPC_SEND_START", "GRPC_SEND_END"]
        assert in_order(trace["stamps"], [*recv, *CORE, *send])


def test_rate_count_and_model_settings(tmp_path: Path) -> None:
    repo = build_repo(tmp_path / "repo")
    out = tmp_path / "trace.json"
    with run_server(
        repo, f"--trace-config=triton,file={out}", "--trace-config=rate=2"
    ) as server:
        url = server.http_url
        # Tracing is off (level OFF): nothing is traced.
        http_infer(url, "add_one", "off1")
        post(
            url,
            "/v2/trace/setting",
            {"trace_level": ["TIMESTAMPS"], "trace_count": "2"},
        )
        for i in range(1, 7):  # every 2nd request, two of them
            http_infer(url, "add_one", f"r{i}")
        assert get(url, "/v2/trace/setting")["trace_count"] == "0"
        # A model's own setting: every request of double, while add_one stays off.
        post(
            url,
            "/v2/models/double/trace/setting",
            {"trace_rate": "1", "trace_count": "-1"},
        )
        http_infer(url, "double", "d1")
        grpc_infer(server.grpc_url, "double", "d2")
        http_infer(url, "add_one", "a7")
        # Clearing the model's rate and count: it follows the global setting again.
        settings = post(
            url,
            "/v2/models/double/trace/setting",
            {"trace_rate": None, "trace_count": None},
        )
        assert settings["trace_rate"] == "2"
        assert settings["trace_count"] == "0"
        http_infer(url, "double", "d3")
    traced = {t["request_id"] for t in read_traces(out).values()}
    assert traced == {"r2", "r4", "d1", "d2"}


def test_ensemble_children_carry_parent_id(tmp_path: Path) -> None:
    repo = build_repo(tmp_path / "repo")
    out = tmp_path / "trace.json"
    with run_server(
        repo,
        f"--trace-config=triton,file={out}",
        "--trace-config=rate=1",
        "--trace-config=level=TIMESTAMPS",
    ) as server:
        grpc_infer(server.grpc_url, "pipeline", "p1")
    traces = read_traces(out)
    (root,) = [t for t in traces.values() if t["model_name"] == "pipeline"]
    root_id = next(i for i, t in traces.items() if t is root)
    children = {t["model_name"]: t for t in traces.values() if t["parent_id"]}
    assert set(children) == {"add_one", "double"}
    for child in children.values():
        assert child["parent_id"] == root_id
        assert in_order(child["stamps"], CORE)
    names = [name for name, _ in root["stamps"]]
    assert "COMPUTE_START" not in names  # the ensemble itself does not execute
    assert in_order(root["stamps"], ["REQUEST_START", "QUEUE_START", "REQUEST_END"])
    first = dict(children["add_one"]["stamps"])["REQUEST_END"]
    second = dict(children["double"]["stamps"])["REQUEST_START"]
    assert first <= second


def test_log_frequency_rotates_files_and_tensors(tmp_path: Path) -> None:
    repo = build_repo(tmp_path / "repo")
    out = tmp_path / "trace.json"
    with run_server(
        repo,
        f"--trace-config=triton,file={out}",
        "--trace-config=triton,log-frequency=2",
        "--trace-config=rate=1",
        "--trace-config=level=TIMESTAMPS",
        "--trace-config=level=TENSORS",
    ) as server:
        for i in range(3):
            http_infer(server.http_url, "add_one", f"t{i}")
        first = Path(f"{out}.0")
        wait_for_file(first)  # two traces collected: written while serving
        assert not Path(f"{out}.1").exists()
    assert not out.exists()
    assert {t["request_id"] for t in read_traces(first).values()} == {"t0", "t1"}
    last = read_traces(Path(f"{out}.1"))
    assert [t["request_id"] for t in last.values()] == ["t2"]
    (trace,) = last.values()
    by_activity = {e["activity"]: e["tensor"] for e in trace["tensors"]}
    assert by_activity["TENSOR_QUEUE_INPUT"] == {
        "name": "INPUT0",
        "data": "0,1,2,3",
        "shape": "1,4",
        "dtype": "FP32",
    }
    assert by_activity["TENSOR_BACKEND_OUTPUT"]["data"] == "1,2,3,4"


def test_a_trace_file_that_cannot_be_written(tmp_path: Path) -> None:
    """A full disk (/dev/full): each failed write is one error line, requests are
    answered, and the server exits cleanly (no traceback from closing the file)."""
    repo = build_repo(tmp_path / "repo")
    with run_server(
        repo,
        "--trace-config=triton,file=/dev/full",
        "--trace-config=rate=1",
        "--trace-config=level=TIMESTAMPS",
    ) as server:
        for i in range(5):
            http_infer(server.http_url, "add_one", f"t{i}")
        server.process.terminate()
        assert server.process.wait(timeout=60) == 0
    log = server.log_text()
    assert "failed writing trace file /dev/full" in log, log
    assert "Traceback" not in log and "closing the trace output failed" not in log
