"""Response flows of a Python model that Triton 2.51 answers in its own way: the
cases the response-flow differential fuzz (tests/fuzz/test_differential_decoupled.py)
found tritonx answering otherwise. The models are tests/flowmodels.py's; each case
runs on tritonx and, when TRITONX_REFERENCE_CMD is given, on the real Triton,
whose answer must be the same (or differ only as the named deviation says).

* the response sender refuses flags other than 0 and FINAL, and a send with flags 0
  and no response, with Triton's words, before it looks at its state;
* an exception with an empty message reads "<EMPTY MESSAGE>" (pybind11's words);
* an error response on a gRPC stream names the model as the request did and
  carries ``triton_final_response``;
* the empty final response names the model as the request did (version "" when
  the request gave none);
* ``triton_enable_empty_final_response`` is the frontend's: the model never sees it;
* generate with two responses, the first an error: the first response sets the
  status (Triton 2.51 always answers 400 there: ``generate-model-error-status``).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from flowmodels import write_models
from google.protobuf import text_format
from serverutil import RunningServer, ours_and_reference
from tritonclient.grpc import service_pb2, service_pb2_grpc

FINAL = 1
CAUGHT_FLAG = (
    "TritonModelException: Unable to send response. Unsupported flag provided."
)
CAUGHT_NONE = (
    "TritonModelException: Inference Response object must be provided when the "
    "response flags is set to zero."
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """tritonx, and the reference when one is given, on the flow models."""
    repo = tmp_path_factory.mktemp("flow_cases")
    write_models(repo)
    with ours_and_reference(repo) as running:
        yield running


def _request(model: str, program: dict[str, Any], **fields: Any) -> Any:
    request = service_pb2.ModelInferRequest(model_name=model, **fields)
    tensor = request.inputs.add(name="PROGRAM", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(json.dumps(program).encode())
    return request


def _stream(server: RunningServer, request: Any) -> list[str]:
    """Each message of the stream: the error (if any) and the infer_response."""
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        replies = list(stub.ModelStreamInfer(iter([request]), timeout=30))
    shown = []
    for reply in replies:
        text = text_format.MessageToString(reply.infer_response, as_one_line=True)
        shown.append(
            f"error: {reply.error_message} | {text}" if reply.error_message else text
        )
    return shown


def _report(
    server: RunningServer, model: str, program: dict[str, Any]
) -> dict[str, Any]:
    """The model's report (its last response's TEXT) for ``program`` over a stream."""
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        replies = list(
            stub.ModelStreamInfer(iter([_request(model, program)]), timeout=30)
        )
    last = replies[-1].infer_response
    index = [o.name for o in last.outputs].index("TEXT")
    raw = last.raw_output_contents[index]
    return json.loads(raw[4:].decode())  # one BYTES element: a length, then it


def _generate(
    server: RunningServer, model: str, program: dict[str, Any]
) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", server.ports["http"], timeout=30
    )
    try:
        body = json.dumps({"PROGRAM": json.dumps(program)})
        connection.request("POST", f"/v2/models/{model}/generate", body)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def _each(servers: dict[str, Any], ask: Any) -> dict[str, Any]:
    return {kind: ask(server) for kind, server in servers.items()}


def _same(answers: dict[str, Any]) -> Any:
    if "reference" in answers:
        assert answers["tritonx"] == answers["reference"]
    return answers["tritonx"]


REPORT = {"response": {"report": True}, "flags": FINAL}


@pytest.mark.parametrize("model", ["flow_decoupled", "flow_plain"])
def test_unsupported_flags_and_a_flags_zero_send_without_response(
    servers: dict[str, Any], model: str
) -> None:
    odd = [{"response": {"out": [1]}, "flags": 2}, {"response": None, "flags": 3}]
    if model == "flow_decoupled":
        odd.append({"response": None, "flags": 0})
    program = {"send": [*odd, REPORT], "end": "none"}
    report = _same(_each(servers, lambda s: _report(s, model, program)))
    expected = [CAUGHT_FLAG, CAUGHT_FLAG] + ([CAUGHT_NONE] if len(odd) == 3 else [])
    assert report["caught"] == expected


def test_an_empty_exception_message(servers: dict[str, Any]) -> None:
    program = {"send": [], "end": "raise", "message": ""}
    answers = _each(servers, lambda s: _stream(s, _request("flow_plain", program)))
    (message,) = _same(answers)
    assert "message: ValueError: <EMPTY MESSAGE>\n\nAt:\n" in message


@pytest.mark.parametrize("version", ["", "1"])
def test_a_stream_error_response_names_the_model_as_the_request_did(
    servers: dict[str, Any], version: str
) -> None:
    program = {"send": [{"response": {"error": "bad"}, "flags": 0}], "end": "none"}
    request = _request("flow_decoupled", program, id="r7", model_version=version)
    version_field = f' model_version: "{version}"' if version else ""
    assert _same(_each(servers, lambda s: _stream(s, request))) == [
        f'error: bad | model_name: "flow_decoupled"{version_field} id: "r7" '
        'parameters { key: "triton_final_response" value { bool_param: false } }'
    ]


@pytest.mark.parametrize("version", ["", "1"])
def test_the_empty_final_response_names_the_model_as_the_request_did(
    servers: dict[str, Any], version: str
) -> None:
    program = {"send": [{"response": {"out": [4]}, "flags": 0}], "end": "none"}
    request = _request("flow_decoupled", program, model_version=version)
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    messages = _same(_each(servers, lambda s: _stream(s, request)))
    version_field = f' model_version: "{version}"' if version else ""
    assert len(messages) == 2
    assert messages[1] == (
        f'model_name: "flow_decoupled"{version_field} '
        'parameters { key: "triton_final_response" value { bool_param: true } }'
    )


def test_the_model_does_not_see_the_empty_final_setting(
    servers: dict[str, Any],
) -> None:
    def ask(server: RunningServer) -> dict[str, Any]:
        request = _request("flow_decoupled", {"send": [REPORT], "end": "none"})
        request.parameters["triton_enable_empty_final_response"].bool_param = False
        request.parameters["mine"].int64_param = 3
        with grpc.insecure_channel(server.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            (reply,) = stub.ModelStreamInfer(iter([request]), timeout=30)
        return json.loads(reply.infer_response.raw_output_contents[0][4:].decode())

    assert _same(_each(servers, ask))["parameters"] == {"mine": 3}


def test_generate_takes_its_status_from_the_first_response(
    servers: dict[str, Any],
) -> None:
    sends = [{"response": {"error": "bad"}, "flags": 0}, {"response": {}, "flags": 0}]
    program = {"send": sends, "end": "none"}
    answers = _each(servers, lambda s: _generate(s, "flow_decoupled", program))
    one = (
        "generate expects model to produce exactly 1 response, use generate stream "
        "for model that generates various number of responses"
    )
    # The error's code (INTERNAL) sets tritonx's status; Triton 2.51 reads the code
    # of an error it freed and answers 400 (generate-model-error-status).
    assert answers["tritonx"] == (500, {"error": one})
    if "reference" in answers:
        assert answers["reference"] == (400, {"error": one})
