"""A gRPC inference the client cancels is logged (verbose) as Triton 2.51 logs it,
"Cancellation notification received for ModelInferHandler|ModelStreamInferHandler"
(QA L0_request_cancellation greps the server log for it after each
grpc_cancellation_test.py case). The core logs it from a gRPC thread; the server
writes such messages within a moment even when no Python code runs meanwhile.
Checked against Triton when the reference is set."""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

pytest.importorskip("tritonx._native", reason="core not built")
from grpcutil import wait_for
from serverutil import REFERENCE_CMD_ENV, RunningServer, run_reference, run_server
from testmodels import HELD_MODEL

CONFIG = """
name: "held"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
instance_group [ { count: 2, kind: KIND_CPU } ]
"""
NOTICE = "Cancellation notification received for "


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cancel_log_repo")
    (root / "held" / "1").mkdir(parents=True)
    (root / "held" / "config.pbtxt").write_text(CONFIG)
    (root / "held" / "1" / "model.py").write_text(HELD_MODEL)
    return root


def _servers() -> list[str]:
    return ["tritonx"] + (["triton"] if os.environ.get(REFERENCE_CMD_ENV) else [])


@pytest.fixture(params=_servers())
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    context: AbstractContextManager[RunningServer]
    if request.param == "triton":
        context = run_reference([repo], "--log-verbose=1")
    else:
        context = run_server(
            repo, "--allow-http=false", "--allow-metrics=false", "--log-verbose=1"
        )
    with context as running:
        yield running


def _input(value: float) -> list[grpcclient.InferInput]:
    inp = grpcclient.InferInput("INPUT0", [1], "FP32")
    inp.set_data_from_numpy(np.array([value], dtype=np.float32))
    return [inp]


def test_cancelled_unary_infer_is_logged(server: RunningServer, repo: Path) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    answers: queue.Queue[Any] = queue.Queue()
    try:
        future = client.async_infer(
            "held", _input(7), lambda result, error: answers.put(error or result)
        )
        wait_for(repo / "held" / "ran-7")
        assert NOTICE not in server.log_text()
        future.cancel()
        assert server.wait_for_log(NOTICE + "ModelInferHandler"), server.log_text()
        assert "CANCELLED" in str(answers.get(timeout=30).status())
    finally:
        client.close()
        (repo / "held" / "ran-7").unlink(missing_ok=True)
        (repo / "held" / "cancelled-7").unlink(missing_ok=True)


def test_cancelled_stream_is_logged(server: RunningServer, repo: Path) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.start_stream(callback=lambda result, error: None)
        client.async_stream_infer("held", _input(8))
        wait_for(repo / "held" / "ran-8")
        assert NOTICE not in server.log_text()
        client.stop_stream(cancel_requests=True)
        assert server.wait_for_log(NOTICE + "ModelStreamInferHandler"), (
            server.log_text()
        )
    finally:
        client.close()
        (repo / "held" / "ran-8").unlink(missing_ok=True)
        (repo / "held" / "cancelled-8").unlink(missing_ok=True)
