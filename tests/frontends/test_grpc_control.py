"""The gRPC control plane (statistics, repository, shared memory, trace and log settings)
against the real ``tritonclient.grpc`` client and the real model manager.

Same server fixture as test_grpc.py (tests/frontends/conftest.py); expectations that are
not obvious were checked against Triton 2.51.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from grpcutil import (
    DTYPES,
    ECHO_MODEL,
    expect_error,
    fp32_input,
    make_input,
    sample,
    wait_for,
)
from serverutil import RunningServer

# -- statistics, repository, settings ----------------------------------------------------


def _stats(client: grpcclient.InferenceServerClient, model: str) -> dict:
    rows = client.get_inference_statistics(model, as_json=True)["model_stats"]
    assert len(rows) == 1
    return rows[0]


def _count(row: dict, key: str) -> int:
    return int(row["inference_stats"][key].get("count", 0))


def test_statistics(client: grpcclient.InferenceServerClient) -> None:
    before = _stats(client, "identity_int32")
    client.infer("identity_int32", [make_input("INPUT0", sample("INT32"))])
    row = _stats(client, "identity_int32")
    assert row["name"] == "identity_int32" and row["version"] == "1"
    # One execution of a batch of two.
    assert int(row["inference_count"]) == int(before.get("inference_count", 0)) + 2
    assert int(row["execution_count"]) == int(before.get("execution_count", 0)) + 1
    assert _count(row, "success") == _count(before, "success") + 1
    assert _count(row, "fail") == _count(before, "fail")
    assert set(row["inference_stats"]) == {
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    }
    batch = {b["batch_size"]: b for b in row["batch_stats"]}
    assert int(batch["2"]["compute_infer"]["count"]) >= 1
    assert int(row["last_inference"]) > 0

    # An error response from the model is still a successful execution in Triton's
    # accounting (checked against Triton 2.51): "fail" counts requests that failed
    # before or around the model, not answers the model chose to give.
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.infer,
        "identity_int32",
        [make_input("INPUT0", sample("INT32"))],
        parameters={"fail": "no"},
    )
    after = _stats(client, "identity_int32")
    assert _count(after, "success") == _count(row, "success") + 1
    assert _count(after, "fail") == _count(row, "fail")

    # Every served version has a row, used or not.
    versions = client.get_inference_statistics("multi", as_json=True)["model_stats"]
    assert [r["version"] for r in versions] == ["1", "3"]
    every = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {"identity", "multi", "slowmodel"} <= {r["name"] for r in every}
    assert "notready" not in {r["name"] for r in every}
    for name in ("nosuch", "notready"):
        message = expect_error(
            grpc.StatusCode.INVALID_ARGUMENT, client.get_inference_statistics, name
        )
        assert message == f"requested model '{name}' is not available"


def _others(index: list[dict]) -> list[dict]:
    return [row for row in index if not row["name"].startswith("identity")]


def test_repository_index(client: grpcclient.InferenceServerClient, repo: Path) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "identity_bf16", "version": "1", "state": "READY"} in index
    others = _others(index)
    notready = next(row for row in others if row["name"] == "notready")
    assert (notready["version"], notready["state"]) == ("1", "UNAVAILABLE")
    assert "notready refuses to initialize" in notready["reason"]
    assert [row for row in others if row["name"] != "notready"] == [
        {"name": "multi", "version": "1", "state": "READY"},
        {"name": "multi", "version": "3", "state": "READY"},
        {"name": "nobatch", "version": "1", "state": "READY"},
        # In the repository, never loaded: a name only.
        {"name": "slowload"},
        {"name": "slowmodel", "version": "1", "state": "READY"},
    ]
    assert len(index) == len(DTYPES) + len(others) + 1


def test_load_with_files_and_unload(client: grpcclient.InferenceServerClient) -> None:
    config = {
        "backend": "python",
        "max_batch_size": 2,
        "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
    }
    client.load_model(
        "loaded",
        config=json.dumps(config),
        files={"file:1/model.py": ECHO_MODEL.encode()},
    )
    assert client.is_model_ready("loaded")
    meta = client.get_model_metadata("loaded", as_json=True)
    assert (meta["versions"], meta["platform"]) == (["1"], "python")
    data = np.array([[1.5, -2.0, 3.0]], np.float32)
    result = client.infer("loaded", [fp32_input(data)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
    # The config given with the load is the one served.
    message = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.infer,
        "loaded",
        [fp32_input(np.zeros((3, 1), np.float32))],
    )
    assert message.endswith("batch-size must be <= 2 for 'loaded'")

    client.unload_model("loaded", unload_dependents=True)
    assert not client.is_model_ready("loaded")
    message = expect_error(
        grpc.StatusCode.NOT_FOUND, client.infer, "loaded", [fp32_input()]
    )
    assert message == "Request for unknown model: 'loaded' has no available versions"
    # Its files lived outside the repository: the index does not list it.
    index = client.get_model_repository_index(as_json=True)["models"]
    assert "loaded" not in {row["name"] for row in index}


def test_load_errors(client: grpcclient.InferenceServerClient) -> None:
    message = expect_error(grpc.StatusCode.INTERNAL, client.load_model, "bad_model")
    assert message == "failed to load 'bad_model', failed to poll from model repository"
    # Loading the failing model again fails again, with initialize's error.
    message = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, client.load_model, "notready"
    )
    assert message.startswith(
        "load failed for model 'notready': version 1 is at UNAVAILABLE state: "
    )
    assert "notready refuses to initialize" in message
    assert not client.is_model_ready("notready")
    # Triton unloads a model it never loaded without complaint.
    client.unload_model("never_loaded")


def test_slow_load_does_not_block_inference(server: RunningServer, repo: Path) -> None:
    loader = grpcclient.InferenceServerClient(server.grpc_url)
    other = grpcclient.InferenceServerClient(server.grpc_url)
    done = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:
        try:
            loader.load_model("slowload")
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        done.set()

    thread = threading.Thread(target=load)
    thread.start()
    try:
        # initialize is running and cannot return before "go" exists: everything
        # below happens while the load is provably still in progress.
        wait_for(repo / "slowload" / "loading")
        for i in range(20):
            data = np.full((1, 4), i, np.float32)
            result = other.infer("identity", [fp32_input(data)])
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
        assert other.is_server_live()
        assert other.get_model_metadata("identity", as_json=True)["name"] == "identity"
        index = other.get_model_repository_index(as_json=True)["models"]
        assert {"name": "slowload", "version": "1", "state": "LOADING"} in index
        assert not other.is_model_ready("slowload")
        message = expect_error(
            grpc.StatusCode.NOT_FOUND, other.infer, "slowload", [fp32_input()]
        )
        assert message == (
            "Request for unknown model: 'slowload' has no available versions"
        )
        assert not done.is_set()
    finally:
        (repo / "slowload" / "go").touch()
        thread.join(60)
    assert done.is_set() and not errors, errors
    assert other.is_model_ready("slowload")
    other.infer("slowload", [fp32_input()])
    other.unload_model("slowload")
    loader.close()
    other.close()


def test_shared_memory_rpcs(client: grpcclient.InferenceServerClient) -> None:
    assert len(client.get_system_shared_memory_status().regions) == 0
    assert len(client.get_cuda_shared_memory_status().regions) == 0
    # No such POSIX shm object: Triton's INTERNAL "Unable to open ..." (the rest
    # of the extension is tested in tests/sharedmemory).
    expect_error(
        grpc.StatusCode.INTERNAL,
        client.register_system_shared_memory,
        "r",
        "/tritonx_no_such_key",
        64,
    )
    expect_error(grpc.StatusCode.NOT_FOUND, client.get_system_shared_memory_status, "r")
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory("r")


def test_trace_settings(client: grpcclient.InferenceServerClient) -> None:
    settings = client.get_trace_settings(as_json=True)["settings"]
    assert settings["trace_level"]["value"] == ["OFF"]
    assert settings["trace_rate"]["value"] == ["1000"]
    updated = client.update_trace_settings(settings={"trace_rate": "5"}, as_json=True)
    assert updated["settings"]["trace_rate"]["value"] == ["5"]
    client.update_trace_settings(settings={"trace_rate": None})
    assert client.get_trace_settings(as_json=True)["settings"]["trace_rate"][
        "value"
    ] == ["1000"]
    # Triton ignores level names it does not know.
    updated = client.update_trace_settings(
        settings={"trace_level": ["LOUD"]}, as_json=True
    )
    assert updated["settings"]["trace_level"]["value"] == ["OFF"]
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.update_trace_settings,
        settings={"trace_level": ["OFF", "TIMESTAMPS"]},
    )


def test_log_settings(client: grpcclient.InferenceServerClient) -> None:
    settings = client.get_log_settings(as_json=True)["settings"]
    assert settings["log_info"]["bool_param"] is True
    assert settings["log_format"]["string_param"] == "default"
    updated = client.update_log_settings(
        {"log_verbose_level": 2, "log_info": False}, as_json=True
    )["settings"]
    assert updated["log_verbose_level"]["uint32_param"] == 2
    assert updated["log_info"]["bool_param"] is False
    client.update_log_settings({"log_verbose_level": 0, "log_info": True})
    expect_error(
        grpc.StatusCode.UNIMPLEMENTED,
        client.update_log_settings,
        {"log_file": "/tmp/x"},
    )
