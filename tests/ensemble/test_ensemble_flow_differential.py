"""Ensembles of the flow models (tests/flowmodels.py ENSEMBLES) that Triton 2.51
answers in its own way: the cases the ensemble response-flow fuzz
(tests/fuzz/test_differential_ensemble_flow.py) found tritonx answering
otherwise. Each runs on tritonx and, when TRITONX_REFERENCE_CMD is given, on the
real Triton, whose answer must be the same.

* an ensemble response reports its outputs' sequence (``sequence_id``,
  ``sequence_start``, ``sequence_end``) only when one of its outputs has bytes:
  Triton skips the rest of an empty output's handling, its sequence included;
* generate shows a response's parameters as fields of its JSON, beside the
  outputs (the reserved fields first, then the parameters, then the outputs: the
  first of a name wins);
* a failed ensemble request counts two failures when no step is in flight as it
  fails, one when a step still is (Triton never releases that request).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from flowmodels import write_ensembles
from serverutil import RunningServer, ours_and_reference
from tritonclient.grpc import service_pb2, service_pb2_grpc

SEQUENCE = {"sequence_end": False, "sequence_id": 0, "sequence_start": False}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """tritonx, and the reference when one is given, on the flow ensembles."""
    repo = tmp_path_factory.mktemp("ensemble_flow_cases")
    write_ensembles(repo)
    with ours_and_reference(repo) as running:
        yield running


def _same(servers: dict[str, Any], ask: Any) -> Any:
    answers = {kind: ask(server) for kind, server in servers.items()}
    if "reference" in answers:
        assert answers["tritonx"] == answers["reference"]
    return answers["tritonx"]


def _returning(response: dict[str, Any]) -> dict[str, Any]:
    """A default-policy program that answers ``response`` by execute's return."""
    return {"send": [], "end": "list", "returns": [response]}


def _parameters(server: RunningServer, program: dict[str, Any]) -> dict[str, Any]:
    """The parameters of ens_p's answer to ``program`` over unary gRPC."""
    request = service_pb2.ModelInferRequest(model_name="ens_p")
    tensor = request.inputs.add(name="PROGRAM", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(json.dumps(program).encode())
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.ModelInfer(request, timeout=30)
    return {
        key: getattr(value, value.WhichOneof("parameter_choice"))
        for key, value in reply.parameters.items()
    }


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ({"out": [], "text": []}, {}),
        ({"out": [2], "text": []}, SEQUENCE),
        ({"out": [], "text": [""]}, SEQUENCE),  # one element: its 4-byte length
    ],
)
def test_sequence_parameters_come_with_an_output_that_has_bytes(
    servers: dict[str, Any], response: dict[str, Any], expected: dict[str, Any]
) -> None:
    program = _returning(response)
    assert _same(servers, lambda s: _parameters(s, program)) == expected


def test_generate_shows_the_response_parameters(servers: dict[str, Any]) -> None:
    def ask(server: RunningServer) -> tuple[int, Any]:
        connection = http.client.HTTPConnection(
            "127.0.0.1", server.ports["http"], timeout=30
        )
        try:
            program = _returning({"out": [1, -2], "text": []})
            body = json.dumps({"PROGRAM": json.dumps(program)})
            connection.request("POST", "/v2/models/ens_p/generate", body)
            answer = connection.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            connection.close()

    status, body = _same(servers, ask)
    assert status == 200
    assert body == {
        "OUT": [1, -2],
        "TEXT": [],
        "model_name": "ens_p",
        "model_version": "1",
        **SEQUENCE,
    }


def _counts(server: RunningServer) -> tuple[int, int]:
    """ens_d's failure and success counts."""
    url = f"http://127.0.0.1:{server.ports['http']}/v2/models/ens_d/stats"
    with urllib.request.urlopen(url, timeout=30) as answer:
        stats = json.loads(answer.read())["model_stats"][0]["inference_stats"]
    return int(stats["fail"]["count"]), int(stats["success"]["count"])


def _ens_d(sends: list[dict[str, Any]]) -> Any:
    request = service_pb2.ModelInferRequest(model_name="ens_d")
    tensor = request.inputs.add(name="PROGRAM", datatype="BYTES", shape=[1])
    program = {"send": sends, "end": "none", "thread": False}
    tensor.contents.bytes_contents.append(json.dumps(program).encode())
    return request


@pytest.mark.parametrize(("flags", "counted"), [(1, 2), (0, 1)])
def test_failure_counts(servers: dict[str, Any], flags: int, counted: int) -> None:
    """The step's error response ends it (FINAL), or more responses follow. Triton
    counts the second failure when it releases the request, after the answer: the
    counts are read once a later request's success is counted too, and the
    failures are as many as expected (or 10 s passed)."""
    sends = [{"response": {"error": "bad"}, "flags": flags}]
    if not flags:
        sends.append({"response": {"out": [1]}, "flags": 1})
    good = _ens_d([{"response": {"out": [1]}, "flags": 1}])

    def ask(server: RunningServer) -> tuple[list[str], int]:
        failed, succeeded = _counts(server)
        with grpc.insecure_channel(server.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            replies = list(stub.ModelStreamInfer(iter([_ens_d(sends)]), timeout=30))
            list(stub.ModelStreamInfer(iter([good]), timeout=30))
        deadline = time.monotonic() + 10
        while True:
            failed_now, succeeded_now = _counts(server)
            settled = succeeded_now > succeeded and failed_now - failed >= counted
            if settled or time.monotonic() > deadline:
                return [r.error_message for r in replies], failed_now - failed
            time.sleep(0.05)

    errors, failures = _same(servers, ask)
    assert errors == ["in ensemble 'ens_d', bad"]
    assert failures == counted
