"""Which outputs a response carries, in which order, and Triton's classification
extension, end to end through tritonclient on HTTP (JSON and binary) and gRPC.

Triton returns outputs in the order the model produced them, whether or not the
request named outputs (filtered, never reordered); a requested output with
``classification: N`` (HTTP) / ``class_count`` (gRPC) answers the top N of each
batch item as BYTES "value:index[:label]" (labels from ``label_filename``, ties by
lower index, N clipped to the values per item). The expected values below were
taken from Triton 2.51; test_reference_outputs.py compares the two directly.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import (
    RunningServer,
    needs_reference,
    run_reference,
    run_server,
)

ORDER_CONFIG = """
name: "order"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 3 ] } ]
output [
  { name: "A", data_type: TYPE_FP32, dims: [ 3 ] },
  { name: "B", data_type: TYPE_FP32, dims: [ 3 ] },
  { name: "C", data_type: TYPE_FP32, dims: [ 3 ] }
]
"""
# Produces C, A, B: neither the config's order nor any request's.
ORDER_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("C", x * 3), pb_utils.Tensor("A", x),
                pb_utils.Tensor("B", x * 2)]))
        return out
"""
CLS_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: {mbs}
input [ {{ name: "INPUT0", data_type: {dtype}, dims: [ {dims} ] }} ]
output [
  {{ name: "PROB", data_type: {dtype}, dims: [ {dims} ], label_filename: "labels.txt" }},
  {{ name: "RAW", data_type: {dtype}, dims: [ {dims} ] }},
  {{ name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] }}
]
"""
CLS_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            text = np.array([b"t"] * (x.shape[0] if x.ndim > 1 else 1), dtype=object)
            if x.ndim > 1:
                text = text.reshape(-1, 1)
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("PROB", x), pb_utils.Tensor("RAW", x),
                pb_utils.Tensor("TEXT", text)]))
        return out
"""
# Line 4 is empty: index 3 has no label; index 5 and up have none either.
LABELS = "cat\ndog\nbird\n\nfish\n"

ROWS = [[0.1, 0.5, 0.5, 0.2, 0.9], [3, 2, 1, 2, 3]]


def make_repo(root: Path) -> Path:
    def write(name: str, config: str, model: str) -> None:
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(textwrap.dedent(config))
        (root / name / "1" / "model.py").write_text(textwrap.dedent(model))
        (root / name / "labels.txt").write_text(LABELS)

    write("order", ORDER_CONFIG, ORDER_MODEL)
    write(
        "cls",
        CLS_CONFIG.format(name="cls", mbs=4, dtype="TYPE_FP32", dims="5"),
        CLS_MODEL,
    )
    write(
        "clsnb",
        CLS_CONFIG.format(name="clsnb", mbs=0, dtype="TYPE_FP32", dims="2, 3"),
        CLS_MODEL,
    )
    write(
        "clsint",
        CLS_CONFIG.format(name="clsint", mbs=0, dtype="TYPE_INT32", dims="4"),
        CLS_MODEL,
    )
    return root


def _http_post(server: RunningServer, model: str, body: dict[str, Any]) -> Any:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", json.dumps(body))
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _json_cls(
    server: RunningServer,
    model: str,
    data: Any,
    dtype: str,
    shape: list[int],
    outputs: list[dict[str, Any]],
) -> Any:
    body = {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": dtype,
                "shape": shape,
                "data": np.array(data).ravel().tolist(),
            }
        ],
        "outputs": outputs,
    }
    return _http_post(server, model, body)


def _grpc_result(client: Any, model: str, data: np.ndarray, outputs: list[Any]) -> Any:
    tensor = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    try:
        result = client.infer(model, [tensor], outputs=outputs)
    except Exception as error:
        return ("error", error.status(), error.message())
    response = result.get_response()
    return [
        (o.name, o.datatype, list(o.shape), result.as_numpy(o.name).tolist())
        for o in response.outputs
    ]


def _http_result(client: Any, model: str, data: np.ndarray, outputs: list[Any]) -> Any:
    tensor = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data, binary_data=True)
    result = client.infer(model, [tensor], outputs=outputs)
    return [
        (o["name"], o["datatype"], o["shape"], result.as_numpy(o["name"]).tolist())
        for o in result.get_response()["outputs"]
    ]


def observe(server: RunningServer) -> dict[str, Any]:
    """Every case, as the server answers it (compared with Triton's answers)."""
    seen: dict[str, Any] = {}
    x3 = {"name": "INPUT0", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}
    seen["order json"] = _http_post(server, "order", {"inputs": [x3]})
    seen["order json B,A"] = _http_post(
        server, "order", {"inputs": [x3], "outputs": [{"name": "B"}, {"name": "A"}]}
    )
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    http = httpclient.InferenceServerClient(server.http_url)
    try:
        three = np.array([1, 2, 3], np.float32)
        seen["order grpc"] = _grpc_result(grpc, "order", three, [])
        seen["order grpc B,A"] = _grpc_result(
            grpc,
            "order",
            three,
            [
                grpcclient.InferRequestedOutput("B"),
                grpcclient.InferRequestedOutput("A"),
            ],
        )
        seen["order http binary"] = _http_result(http, "order", three, None)

        for n in (1, 3, 7, 0):
            seen[f"cls json {n}"] = _json_cls(
                server,
                "cls",
                ROWS,
                "FP32",
                [2, 5],
                [{"name": "PROB", "parameters": {"classification": n}}],
            )
        seen["cls json no labels"] = _json_cls(
            server,
            "cls",
            ROWS,
            "FP32",
            [2, 5],
            [{"name": "RAW", "parameters": {"classification": 2}}],
        )
        seen["cls json mixed"] = _json_cls(
            server,
            "cls",
            ROWS,
            "FP32",
            [2, 5],
            [{"name": "RAW"}, {"name": "PROB", "parameters": {"classification": 2}}],
        )
        seen["cls json not batched"] = _json_cls(
            server,
            "clsnb",
            [[0.1, 0.5, 0.3], [0.2, 0.9, 0.0]],
            "FP32",
            [2, 3],
            [{"name": "PROB", "parameters": {"classification": 2}}],
        )
        seen["cls json int"] = _json_cls(
            server,
            "clsint",
            [5, -1, 7, 7],
            "INT32",
            [4],
            [{"name": "PROB", "parameters": {"classification": 2}}],
        )
        rows = np.array(ROWS, np.float32)
        seen["cls http binary"] = _http_result(
            http,
            "cls",
            rows,
            [httpclient.InferRequestedOutput("PROB", binary_data=True, class_count=3)],
        )
        seen["cls http json via client"] = _http_result(
            http,
            "cls",
            rows,
            [httpclient.InferRequestedOutput("PROB", binary_data=False, class_count=2)],
        )
        for n in (3, 9, 0, -2):
            seen[f"cls grpc {n}"] = _grpc_result(
                grpc,
                "cls",
                rows,
                [grpcclient.InferRequestedOutput("PROB", class_count=n)],
            )
    finally:
        grpc.close()
        http.close()
    return seen


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = make_repo(tmp_path_factory.mktemp("outputs") / "repo")
    with run_server(repo) as running:
        yield running


@pytest.fixture(scope="module")
def tritonx_answers(server: RunningServer) -> dict[str, Any]:
    return observe(server)


def _strings(values: list[str]) -> list[bytes]:
    return [v.encode() for v in values]


ROW0_TOP5 = [
    "0.900000:4:fish",
    "0.500000:1:dog",
    "0.500000:2:bird",
    "0.200000:3",
    "0.100000:0:cat",
]
ROW1_TOP5 = [
    "3.000000:0:cat",
    "3.000000:4:fish",
    "2.000000:1:dog",
    "2.000000:3",
    "1.000000:2:bird",
]


def test_outputs_in_the_order_the_model_produced_them(
    tritonx_answers: dict[str, Any],
) -> None:
    status, body = tritonx_answers["order json"]
    assert status == 200
    assert [o["name"] for o in body["outputs"]] == ["C", "A", "B"]
    # Requested outputs are filtered, not reordered.
    assert [o["name"] for o in tritonx_answers["order json B,A"][1]["outputs"]] == [
        "A",
        "B",
    ]
    assert [o[0] for o in tritonx_answers["order grpc"]] == ["C", "A", "B"]
    assert [o[0] for o in tritonx_answers["order grpc B,A"]] == ["A", "B"]
    assert [o[0] for o in tritonx_answers["order http binary"]] == ["C", "A", "B"]


def test_classification_over_http_json(tritonx_answers: dict[str, Any]) -> None:
    def only(key: str) -> dict[str, Any]:
        status, body = tritonx_answers[key]
        assert status == 200, body
        (output,) = body["outputs"]
        return output

    top1 = only("cls json 1")
    assert (top1["datatype"], top1["shape"]) == ("BYTES", [2, 1])
    assert top1["data"] == [ROW0_TOP5[0], ROW1_TOP5[0]]
    assert only("cls json 3")["data"] == ROW0_TOP5[:3] + ROW1_TOP5[:3]
    clipped = only("cls json 7")  # more classes than values: all of them
    assert clipped["shape"] == [2, 5] and clipped["data"] == ROW0_TOP5 + ROW1_TOP5
    raw = only("cls json 0")  # 0 asks for the values themselves
    assert (raw["datatype"], raw["shape"]) == ("FP32", [2, 5])
    assert only("cls json no labels")["data"] == [
        "0.900000:4",
        "0.500000:1",
        "3.000000:0",
        "3.000000:4",
    ]
    mixed = tritonx_answers["cls json mixed"][1]["outputs"]
    assert [(o["name"], o["datatype"]) for o in mixed] == [
        ("PROB", "BYTES"),
        ("RAW", "FP32"),
    ]
    not_batched = only("cls json not batched")  # the whole tensor, shape [N]
    assert not_batched["shape"] == [2]
    assert not_batched["data"] == ["0.900000:4:fish", "0.500000:1:dog"]
    assert only("cls json int")["data"] == ["7:2:bird", "7:3"]


def test_classification_over_http_binary_and_grpc(
    tritonx_answers: dict[str, Any],
) -> None:
    expected = [
        ("PROB", "BYTES", [2, 3], [_strings(ROW0_TOP5[:3]), _strings(ROW1_TOP5[:3])])
    ]
    assert tritonx_answers["cls http binary"] == expected
    assert tritonx_answers["cls grpc 3"] == expected
    assert tritonx_answers["cls http json via client"] == [
        ("PROB", "BYTES", [2, 2], [ROW0_TOP5[:2], ROW1_TOP5[:2]])  # JSON: str
    ]
    assert tritonx_answers["cls grpc 9"][0][2] == [2, 5]
    assert tritonx_answers["cls grpc 0"][0][:3] == ("PROB", "FP32", [2, 5])
    assert tritonx_answers["cls grpc -2"] == (
        "error",
        "StatusCode.INVALID_ARGUMENT",
        "invalid value for 'classification' parameter, expected >= 0",
    )


@pytest.mark.parametrize("value", [-1, "2", 2.5, True])
def test_classification_value_must_be_an_unsigned_integer(
    server: RunningServer, value: Any
) -> None:
    # Triton 2.51 answers these with HTTP 500; tritonx says 400 (bad input), same text.
    status, body = _json_cls(
        server,
        "cls",
        ROWS,
        "FP32",
        [2, 5],
        [{"name": "PROB", "parameters": {"classification": value}}],
    )
    assert (status, body) == (
        400,
        {
            "error": "Unable to set 'classification': attempt to access JSON "
            "non-unsigned-integer as unsigned-integer"
        },
    )


def test_classification_of_an_unsupported_type(server: RunningServer) -> None:
    # Triton 2.51's server crashes on this request (BYTES has no element size);
    # tritonx answers its TopkClassifications error.
    status, body = _json_cls(
        server,
        "cls",
        ROWS,
        "FP32",
        [2, 5],
        [{"name": "TEXT", "parameters": {"classification": 1}}],
    )
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    answer = _grpc_result(
        grpc,
        "cls",
        np.array(ROWS, np.float32),
        [grpcclient.InferRequestedOutput("TEXT", class_count=1)],
    )
    grpc.close()
    message = "class result not available for output due to unsupported type 'BYTES'"
    assert (status, body) == (400, {"error": message})
    assert answer == ("error", "StatusCode.INVALID_ARGUMENT", message)


@needs_reference
def test_outputs_match_triton(tritonx_answers: dict[str, Any], tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with run_reference([repo]) as server:
        theirs = observe(server)
    for key, answer in tritonx_answers.items():
        assert answer == theirs[key], key


def test_python_http_engine_answers_the_same(
    tritonx_answers: dict[str, Any], tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    with run_server(repo, "--http-engine=python") as server:
        python_engine = observe(server)
    assert python_engine == tritonx_answers
