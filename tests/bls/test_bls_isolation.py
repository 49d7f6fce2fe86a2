"""Two servers in one process: a BLS call reaches the models of its own server only
(each model finds its server through the context it was loaded with)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from blsmodels import ADD_CONFIG, ADD_MODEL, probe, req, write_repo


def _server_options(repo: Path) -> Any:
    from tritonx.server_options import ServerOptions

    return ServerOptions(
        model_repositories=[repo],
        http_address="127.0.0.1",
        grpc_address="127.0.0.1",
        http_port=0,
        grpc_port=0,
        allow_metrics=False,
    )


def _add_variant(repo: Path, name: str, body: str) -> None:
    version = repo / name / "1"
    version.mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n{ADD_CONFIG}')
    (version / "model.py").write_text(body)


def test_each_server_sees_only_its_own_models(tmp_path: Path) -> None:
    pytest.importorskip("tritonx._native")
    from tritonx import loops
    from tritonx.server import Server

    repo_a = write_repo(tmp_path / "a", ["bls_probe", "add"])
    _add_variant(repo_a, "only_a", ADD_MODEL)
    repo_b = write_repo(tmp_path / "b", ["bls_probe"])
    _add_variant(repo_b, "add", ADD_MODEL.replace("x + 1", "x + 100"))

    steps = [
        {
            "call": "exec",
            "req": req(
                "add", [["IN", "float32", [1.0]]], requested_output_names=["OUT"]
            ),
        },
        {
            "call": "async_exec",
            "req": req(
                "only_a", [["IN", "float32", [1.0]]], requested_output_names=["OUT"]
            ),
        },
    ]

    async def scenario() -> list[Any]:
        servers = [Server(_server_options(repo_a)), Server(_server_options(repo_b))]
        try:
            for server in servers:
                await server.start()
            return [
                await asyncio.to_thread(
                    probe, f"127.0.0.1:{s.ports['grpc']}", steps, "grpc"
                )
                for s in servers
            ]
        finally:
            for server in servers:
                await server.stop()

    (a_add, a_only), (b_add, b_only) = loops.run(scenario())
    assert a_add["outputs"]["OUT"][1] == [2.0]
    assert b_add["outputs"]["OUT"][1] == [101.0]
    assert a_only["outputs"]["OUT"][1] == [2.0]
    assert b_only["error"] == (
        "Model only_a - Error when running inference: Failed for execute the "
        "inference request. Model 'only_a' is not ready."
    )


def test_bls_from_a_stub_process(tmp_path: Path) -> None:
    """EXECUTION_MODE=process: the stub forwards each call to its server, which runs
    it for that instance (same results, same self-call refusal)."""
    from serverutil import run_server

    repo = write_repo(tmp_path / "repo", ["bls_probe", "add", "countdown"])
    count = ["IN", "int32", [2]]
    with run_server(repo, "--backend-config=python,execution-mode=process") as server:
        add, nope, deep = probe(
            server.http_url,
            [
                {
                    "call": "async_exec",
                    "req": req(
                        "add",
                        [["IN", "float32", [2.0]]],
                        requested_output_names=["OUT"],
                    ),
                },
                {
                    "call": "exec",
                    "req": req("nope", [], requested_output_names=["OUT"]),
                },
                {
                    "call": "exec",
                    "req": req("countdown", [count], requested_output_names=["OUT"]),
                },
            ],
        )
    assert add["outputs"]["OUT"][1] == [3.0]
    assert nope["error"].endswith("Model 'nope' is not ready.")
    assert "would never run" in deep["error"]


# Calls add (OUT = IN + 1); IN[0] == -5 first makes a call to slow and ends the stub
# process while that call is in flight.
DIES_IN_A_CALL = """
import os
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


def _call(model, x):
    return pb_utils.InferenceRequest(
        model_name=model, inputs=[pb_utils.Tensor("IN", x)],
        requested_output_names=["OUT"]).exec()


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            if x.size and x[0] == -5:
                threading.Timer(0.3, os._exit, (1,)).start()
                _call("slow", x)
            answer = _call("add", x).output_tensors()[0].as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", answer), pb_utils.Tensor("OUT2", answer),
                pb_utils.Tensor("META", np.array([b"{}"], dtype=object))]))
        return out
"""

SLOW = """
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(2)
        return [pb_utils.InferenceResponse([
            pb_utils.Tensor("OUT", x), pb_utils.Tensor("OUT2", x),
            pb_utils.Tensor("META", np.array([b"{}"], dtype=object))])
            for x in (pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
                      for r in requests)]
"""


def test_a_stub_that_dies_in_a_call_calls_again_after_its_restart(
    tmp_path: Path,
) -> None:
    """The stub's call regions and calls socket are per stub: after a stub ended with
    a call in flight and was restarted, its calls of every size answer exactly (the
    ended call's answer lands nowhere)."""
    import time

    import numpy as np
    import tritonclient.http as httpclient
    from serverutil import run_server
    from tritonclient.utils import InferenceServerException

    repo = write_repo(tmp_path / "repo", ["add"])
    _add_variant(repo, "dies", DIES_IN_A_CALL)
    _add_variant(repo, "slow", SLOW)

    def infer(client: Any, values: np.ndarray) -> np.ndarray:
        tensor = httpclient.InferInput("IN", list(values.shape), "FP32")
        tensor.set_data_from_numpy(values)
        result = client.infer(
            "dies", [tensor], outputs=[httpclient.InferRequestedOutput("OUT")]
        )
        return np.asarray(result.as_numpy("OUT"))

    with run_server(repo, "--backend-config=python,execution-mode=process") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            small = np.array([1, 2, 3], np.float32)
            assert infer(client, small).tolist() == [2, 3, 4]
            with pytest.raises(InferenceServerException) as info:
                infer(client, np.array([-5, 1], np.float32))
            assert "Stub process 'dies_0' is not healthy." in info.value.message()
            deadline = time.monotonic() + 60
            while True:  # until the restarted stub serves
                try:
                    infer(client, small)
                    break
                except InferenceServerException:
                    assert time.monotonic() < deadline, server.log_text()
                    time.sleep(0.1)
            for n in (3, 100_000, 7, 20_000):
                values = np.arange(n, dtype=np.float32)
                assert np.array_equal(infer(client, values), values + 1), n
        finally:
            client.close()
