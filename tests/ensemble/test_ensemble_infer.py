"""Ensembles end to end through real servers: a linear pipeline, fan-out/fan-in,
a dynamically batched step sharing batches with direct traffic, a decoupled step
streaming through the ensemble (gRPC stream), a failing step, statistics of the
ensemble and of its composing models."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import ensemble_repo as er
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, run_server
from testmodels import HELD_MODEL
from tritonclient.utils import InferenceServerException

X = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ensembles") / "repo"
    path.mkdir()
    er.build_basic_repo(path)
    er.write_batched(path)
    er.write_extras(path, HELD_MODEL)
    return path


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    with run_server(repo) as running:
        yield running


def http_infer(
    server: RunningServer,
    model: str,
    x: np.ndarray = X,
    outputs: list[str] | None = None,
) -> dict[str, np.ndarray]:
    client = httpclient.InferenceServerClient(server.http_url)
    inp = httpclient.InferInput("INPUT0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    requested = (
        [httpclient.InferRequestedOutput(o) for o in outputs] if outputs else None
    )
    result = client.infer(model, [inp], outputs=requested)
    return {
        o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]
    }


def grpc_infer(server: RunningServer, model: str, x: np.ndarray = X) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("INPUT0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(model, [inp])
    return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}


def stats(server: RunningServer, model: str) -> dict[str, Any]:
    client = httpclient.InferenceServerClient(server.http_url)
    return client.get_inference_statistics(model)["model_stats"][0]


def test_linear_pipeline(server: RunningServer) -> None:
    expected = (X + 1) * 2 + 1
    np.testing.assert_array_equal(http_infer(server, "pipeline")["OUTPUT0"], expected)
    np.testing.assert_array_equal(grpc_infer(server, "pipeline")["OUTPUT0"], expected)


def test_fan_out_fan_in(server: RunningServer) -> None:
    out = http_infer(server, "fan")
    np.testing.assert_array_equal(out["A"], X + 1)
    np.testing.assert_array_equal(out["B"], X * 2)
    np.testing.assert_array_equal(out["OUTPUT0"], (X + 1) + X * 2)
    # Only what was asked for comes back (the branches still run to produce it).
    only = http_infer(server, "fan", outputs=["OUTPUT0"])
    assert list(only) == ["OUTPUT0"]
    np.testing.assert_array_equal(only["OUTPUT0"], (X + 1) + X * 2)


def test_failing_step_ends_the_request(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    inp = httpclient.InferInput("INPUT0", [2, 4], "FP32")
    inp.set_data_from_numpy(X)
    with pytest.raises(InferenceServerException) as info:
        client.infer("failing", [inp])
    assert info.value.message() == "in ensemble 'failing', step failed on purpose"
    assert info.value.status() == "500"
    gclient = grpcclient.InferenceServerClient(server.grpc_url)
    ginp = grpcclient.InferInput("INPUT0", [2, 4], "FP32")
    ginp.set_data_from_numpy(X)
    with pytest.raises(InferenceServerException) as ginfo:
        gclient.infer("failing", [ginp])
    assert "in ensemble 'failing', step failed on purpose" in str(ginfo.value.message())
    # Triton counts a failed ensemble request twice in its failure count.
    failed = stats(server, "failing")
    assert failed["inference_stats"]["fail"]["count"] == 4
    assert failed["inference_stats"]["success"]["count"] == 0


def test_statistics_of_ensemble_and_composing_models(server: RunningServer) -> None:
    before = stats(server, "double")
    http_infer(server, "pipeline")
    ens = stats(server, "pipeline")
    after = stats(server, "double")
    # One ensemble request of batch 2: one success, inference_count 2, one "execution".
    assert ens["inference_stats"]["success"]["count"] >= 1
    assert ens["inference_count"] == 2 * ens["inference_stats"]["success"]["count"]
    assert ens["execution_count"] == ens["inference_stats"]["success"]["count"]
    assert any(b["batch_size"] == 2 for b in ens["batch_stats"])
    # The composing model counted its own step.
    assert after["inference_count"] == before["inference_count"] + 2
    assert after["execution_count"] == before["execution_count"] + 1
    # The ensemble's compute time is its steps' compute time.
    assert ens["inference_stats"]["compute_infer"]["ns"] > 0


def test_ensemble_step_batches_with_direct_traffic(server: RunningServer) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    results: dict[str, Any] = {}

    def call(model: str) -> None:
        results[model] = http_infer(server, model, x)["OUTPUT0"]

    threads = [
        threading.Thread(target=call, args=(m,)) for m in ("via_batched", "batched")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    np.testing.assert_array_equal(results["via_batched"], x * 3)
    np.testing.assert_array_equal(results["batched"], x * 3)
    batched = stats(server, "batched")
    # The batcher held the first request until the second arrived: one execution of 2.
    assert batched["execution_count"] == 1
    assert batched["inference_count"] == 2
    assert [b["batch_size"] for b in batched["batch_stats"]] == [2]


def test_decoupled_step_streams_through_the_ensemble(server: RunningServer) -> None:
    responses: queue.Queue[Any] = queue.Queue()

    def on_response(result: Any, error: Any) -> None:
        responses.put(error if error is not None else result)

    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=partial(on_response))
    try:
        inp = grpcclient.InferInput("INPUT0", [2, 4], "FP32")
        inp.set_data_from_numpy(X)
        client.async_stream_infer("stream", [inp], request_id="s1")
        got = []
        for _ in range(3):
            item = responses.get(timeout=60)
            assert not isinstance(item, InferenceServerException), item
            got.append(item.as_numpy("OUTPUT0"))
    finally:
        client.stop_stream()
    got.sort(key=lambda a: float(a[0][1]))
    for k, out in zip((1, 2, 3), got, strict=True):
        np.testing.assert_array_equal(out, X * k + 1)


def test_decoupled_ensemble_refused_over_http(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    inp = httpclient.InferInput("INPUT0", [2, 4], "FP32")
    inp.set_data_from_numpy(X)
    with pytest.raises(InferenceServerException) as info:
        client.infer("stream", [inp])
    assert info.value.message() == (
        "HTTP end point doesn't support models with decoupled transaction policy"
    )
    config = client.get_model_config("stream")
    assert config["model_transaction_policy"] == {"decoupled": True}


def test_metadata_and_config(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    assert client.get_model_metadata("pipeline") == {
        "name": "pipeline",
        "versions": ["1"],
        "platform": "ensemble",
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 4]}],
    }
    config = client.get_model_config("pipeline")
    assert config["platform"] == "ensemble"
    assert config["backend"] == ""
    assert config["instance_group"] == []
    assert "optimization" not in config
    steps = config["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["add_one", "double", "add_one"]
    assert steps[1] == {
        "model_name": "double",
        "model_version": -1,
        "input_map": {"INPUT0": "t1"},
        "output_map": {"OUTPUT0": "t2"},
        "model_namespace": "",
    }
    gclient = grpcclient.InferenceServerClient(server.grpc_url)
    gconfig = gclient.get_model_config("pipeline", as_json=True)["config"]
    assert gconfig["platform"] == "ensemble"
    assert len(gconfig["ensemble_scheduling"]["step"]) == 3


def test_request_parameters_reach_the_steps(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("INPUT0", [2, 4], "FP32")
    inp.set_data_from_numpy(X)
    result = client.infer("param_pipe", [inp], parameters={"offset": 10})
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), X + 11)


def wait_for(path: Path, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_cancelling_the_ensemble_request_reaches_the_running_step(
    server: RunningServer, repo: Path
) -> None:
    held_dir = repo / "held"
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("INPUT0", [1], "FP32")
    inp.set_data_from_numpy(np.array([7], dtype=np.float32))
    answers: queue.Queue[Any] = queue.Queue()
    call = client.async_infer(
        "via_held", [inp], callback=lambda result, error: answers.put(error)
    )
    assert wait_for(held_dir / "ran-7")
    call.cancel()
    # The step saw the cancellation while executing, and the client got its answer.
    assert wait_for(held_dir / "cancelled-7")
    error = answers.get(timeout=60)
    assert isinstance(error, InferenceServerException)
    assert "CANCELLED" in str(error.status()) or "ancel" in str(error.message())
