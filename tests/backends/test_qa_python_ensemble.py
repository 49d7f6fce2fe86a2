"""Triton's L0_backend_python/ensemble QA as a differential test: an ensemble of
two Python add_sub models in a chain (no batching), whose outputs are twice its
inputs, over HTTP and gRPC, and the statistics it leaves on each model. The same
requests go to tritonx (in-process and with the steps in stub processes) and to
Triton 2.51; every case asserts the same concrete answers on each. (The QA's GPU
ensemble step is a libtorch model: left out.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import PYTHON_MODEL_SERVERS, RunningServer, run_python_model_server
from testmodels import write_model

IO = """
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 16 ] },
        { name: "INPUT1", data_type: TYPE_FP32, dims: [ 16 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 16 ] },
         { name: "OUTPUT1", data_type: TYPE_FP32, dims: [ 16 ] } ]
"""

ADD_SUB = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)
            ]))
        return responses
"""


def _step(model: str, inputs: tuple[str, str], outputs: tuple[str, str]) -> str:
    maps = "".join(
        f' input_map {{ key: "INPUT{i}" value: "{name}" }}'
        for i, name in enumerate(inputs)
    ) + "".join(
        f' output_map {{ key: "OUTPUT{i}" value: "{name}" }}'
        for i, name in enumerate(outputs)
    )
    return f'{{ model_name: "{model}" model_version: -1{maps} }}'


ENSEMBLE = (
    'platform: "ensemble"\nmax_batch_size: 0\n'
    + IO
    + "ensemble_scheduling { step [ "
    + _step("add_sub_1", ("INPUT0", "INPUT1"), ("sum", "difference"))
    + ", "
    + _step("add_sub_2", ("sum", "difference"), ("OUTPUT0", "OUTPUT1"))
    + " ] }\n"
)

A = np.linspace(-2.0, 2.0, 16, dtype=np.float32)
B = np.arange(16, dtype=np.float32) / 8


@pytest.fixture(scope="module", params=list(PYTHON_MODEL_SERVERS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp(f"ensemble_{request.param}")
    for name in ("add_sub_1", "add_sub_2"):
        write_model(
            repo,
            name,
            f'backend: "python"\nmax_batch_size: 0\n{IO}',
            ADD_SUB,
        )
    (repo / "ensemble" / "1").mkdir(parents=True)
    (repo / "ensemble" / "config.pbtxt").write_text(ENSEMBLE)
    with run_python_model_server(request.param, repo) as running:
        yield running


# Ensemble requests sent so far, by server (its HTTP address).
SENT: Counter[str] = Counter()


def _infer(server: RunningServer, client: Any, lib: Any) -> Any:
    SENT[server.http_url] += 1
    return client.infer("ensemble", _inputs(lib))


def _inputs(lib: Any) -> list[Any]:
    tensors = []
    for name, values in (("INPUT0", A), ("INPUT1", B)):
        tensor = lib.InferInput(name, [16], "FP32")
        tensor.set_data_from_numpy(values)
        tensors.append(tensor)
    return tensors


def test_the_chain_doubles_its_inputs(server: RunningServer) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    for result in (
        _infer(server, http, httpclient),
        _infer(server, grpc, grpcclient),
    ):
        # (a + b) + (a - b) and (a + b) - (a - b), exactly, in float32
        assert result.as_numpy("OUTPUT0").tolist() == ((A + B) + (A - B)).tolist()
        assert result.as_numpy("OUTPUT1").tolist() == ((A + B) - (A - B)).tolist()
    http.close()
    grpc.close()


def test_statistics_of_the_ensemble_and_its_steps(server: RunningServer) -> None:
    """One more request: the ensemble and each step count it once."""
    client = httpclient.InferenceServerClient(server.http_url)

    def stats(model: str) -> dict[str, int]:
        entry = client.get_inference_statistics(model)["model_stats"][0]
        return {
            "inference_count": int(entry["inference_count"]),
            "execution_count": int(entry["execution_count"]),
            "success": int(entry["inference_stats"]["success"]["count"]),
        }

    models = ("ensemble", "add_sub_1", "add_sub_2")

    def counted() -> bool:  # (Triton 2.51 counts a request after answering it)
        return all(stats(m)["success"] == SENT[server.http_url] for m in models)

    wait_until(counted, "earlier requests counted")
    before = {m: stats(m) for m in models}
    _infer(server, client, httpclient)
    wait_until(counted, "the request counted")
    after = {m: stats(m) for m in models}
    client.close()
    # Each model counts it once, as an inference and as an execution (the
    # ensemble too).
    for model in models:
        assert after[model] == {key: value + 1 for key, value in before[model].items()}
