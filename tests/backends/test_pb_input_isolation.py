"""A Python model that writes into its inputs in place (``x -= 1``, as models
normalising data do) changes only its own copy when others read the same bytes: a
client's shared memory region (reused by the next request), an ensemble tensor that
is also an ensemble output, a BLS caller's array. Triton's python backend always
hands models a copy; tritonx copies exactly these inputs (``Tensor::aliased``) and
reads the rest in place. Likewise a BLS caller writing into its answer changes
neither the response cache's entry nor the array the callee answered from (a slice
of a table it keeps). Real servers, tritonclient HTTP, models in the server
process and in stub processes (whose inputs are the execute's own copy in the
server's region, writable as in Triton); compared with Triton 2.51 when
TRITONX_REFERENCE_CMD is set."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from serverutil import RunningServer, reference_command, run_reference, run_server

SIMPLE = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_FP32, dims: [ 4 ] }} ]
"""
IN_PLACE = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            x -= 1.0
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x.copy())]))
        return out
"""
DOUBLE = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(
                "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 2)])
            for r in requests
        ]
"""
ENSEMBLE = """
name: "ens"
platform: "ensemble"
max_batch_size: 0
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "DOUBLED", data_type: TYPE_FP32, dims: [ 4 ] },
         { name: "LESS", data_type: TYPE_FP32, dims: [ 4 ] } ]
ensemble_scheduling { step [
  { model_name: "double" model_version: -1
    input_map { key: "IN" value: "IN" } output_map { key: "OUT" value: "DOUBLED" } },
  { model_name: "in_place" model_version: -1
    input_map { key: "IN" value: "DOUBLED" } output_map { key: "OUT" value: "LESS" } }
] }
"""
CACHED_CALLS = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            answers = []
            for model in ("double_cached",) * 3 + ("table",) * 2:  # hits, a table
                answer = pb_utils.InferenceRequest(
                    model_name=model, requested_output_names=["OUT"],
                    inputs=[pb_utils.get_input_tensor_by_name(r, "IN")],
                ).exec()
                if answer.has_error():
                    raise pb_utils.TritonModelException(answer.error().message())
                got = pb_utils.get_output_tensor_by_name(answer, "OUT").as_numpy()
                answers.append(got[:2].copy())
                got -= 100.0  # the caller's own copy, not the cache's, the table's
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", np.concatenate(answers))]))
        return out
"""
TABLE = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.table = np.arange(8, dtype=np.float32) + 5  # kept across requests

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", self.table[:4])])
                for _ in requests]
"""
BLS = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            state = np.full(4, 10.0, np.float32)  # the caller's own array
            answer = pb_utils.InferenceRequest(
                model_name="in_place", requested_output_names=["OUT"],
                inputs=[pb_utils.Tensor("IN", state)],
            ).exec()
            if answer.has_error():
                raise pb_utils.TritonModelException(answer.error().message())
            got = pb_utils.get_output_tensor_by_name(answer, "OUT").as_numpy()
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", np.concatenate([got[:2], state[:2]]))]))
        return out
"""


CACHE = "--cache-config=local,size=1048576"


def _write(repo: Path, name: str, config: str, model: str | None) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(textwrap.dedent(config))
    if model is not None:
        (repo / name / "1" / "model.py").write_text(textwrap.dedent(model))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("isolation") / "repo"
    _write(root, "in_place", SIMPLE.format(name="in_place"), IN_PLACE)
    _write(root, "double", SIMPLE.format(name="double"), DOUBLE)
    _write(root, "bls", SIMPLE.format(name="bls"), BLS)
    cached = SIMPLE.format(name="double_cached") + "response_cache { enable: true }\n"
    _write(root, "double_cached", cached, DOUBLE)
    _write(root, "cached_calls", SIMPLE.format(name="cached_calls"), CACHED_CALLS)
    _write(root, "table", SIMPLE.format(name="table"), TABLE)
    _write(root, "ens", ENSEMBLE, None)
    return root


@pytest.fixture(scope="module", params=["in-process", "process"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    mode = f"--backend-config=python,execution-mode={request.param}"
    with run_server(repo, CACHE, mode, timeout=120.0) as running:
        yield running


def _shm_answers(client: Any, model: str) -> tuple[list[float], float]:
    """Three requests reading one client region: their answers, then the region."""
    name = f"tx_iso_{os.getpid()}_{model}"
    handle = shm.create_shared_memory_region(name, "/" + name, 16)
    try:
        shm.set_shared_memory_region(handle, [np.full(4, 10.0, np.float32)])
        client.register_system_shared_memory(name, "/" + name, 16)
        given = httpclient.InferInput("IN", [4], "FP32")
        given.set_shared_memory(name, 16)
        answers = [
            float(client.infer(model, [given]).as_numpy("OUT")[0]) for _ in range(3)
        ]
        client.unregister_system_shared_memory(name)
        return answers, float(shm.get_contents_as_numpy(handle, np.float32, [4])[0])
    finally:
        shm.destroy_shared_memory_region(handle)


def _answers(url: str) -> dict[str, Any]:
    client = httpclient.InferenceServerClient(url)
    got: dict[str, Any] = {}
    got["in_place"] = _shm_answers(client, "in_place")
    given = httpclient.InferInput("IN", [4], "FP32")
    given.set_data_from_numpy(np.array([1, 2, 3, 4], np.float32))
    result = client.infer("ens", [given])
    got["ens"] = (result.as_numpy("DOUBLED").tolist(), result.as_numpy("LESS").tolist())
    got["bls"] = client.infer("bls", [given]).as_numpy("OUT").tolist()
    got["cached"] = client.infer("cached_calls", [given]).as_numpy("OUT").tolist()
    client.close()
    return got


EXPECTED = {
    # Each request sees the client's 10s, and the region keeps them.
    "in_place": ([9.0, 9.0, 9.0], 10.0),
    # The ensemble answers DOUBLED as "double" made it, not as "in_place" left it.
    "ens": ([2.0, 4.0, 6.0, 8.0], [1.0, 3.0, 5.0, 7.0]),
    # The callee's answer (9s), then the caller's array, unchanged (10s).
    "bls": [9.0, 9.0, 10.0, 10.0],
    # Every call answers as the callee meant (2 * IN, then the table's 5s and 6s):
    # each -100 stayed with the caller's copy.
    "cached": [2.0, 4.0] * 3 + [5.0, 6.0] * 2,
}


def test_in_place_writes_reach_only_the_models_copy(server: RunningServer) -> None:
    assert _answers(server.http_url) == EXPECTED


@pytest.mark.skipif(reference_command() is None, reason="TRITONX_REFERENCE_CMD unset")
def test_in_place_writes_match_triton(repo: Path) -> None:
    with run_reference([repo], CACHE) as reference:
        assert _answers(reference.http_url) == EXPECTED
