"""Behaviours from Triton's QA directories L0_nan_inf, L0_nullchar_string,
L0_infer_zero, L0_scalar_io, L0_string_io and L0_input_validation, as differential
tests: the same requests go to tritonx and, when TRITONX_REFERENCE_CMD is given, to
Triton 2.51, and what each answers (status, raw HTTP body, decoded outputs) must be
equal.

L0_input_validation's refusals of missing, optional and extra inputs are already
checked word for word by test_input_names_differential.py, and the HTTP byte-size
and string-count refusals by test_http_check_order.py; here: a model whose inputs
are all optional and gRPC data that does not fill its shape. Model names on load
are tests/hardening/test_model_names.py's."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, differential, run_either
from testmodels import ECHO_MODEL, write_model
from tritonclient.utils import InferenceServerException

# Answers one of each value JSON cannot spell plainly (as L0_nan_inf's model).
NAN_INF = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = np.array([np.nan, np.inf, -np.inf, 1, 2, 3], dtype=np.float32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out)])
                for _ in requests]
"""


def _config(name: str, dtype: str, dims: str, max_batch: int = 0) -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [ {{ name: "INPUT0" data_type: {dtype} dims: {dims} }} ]
output [ {{ name: "OUTPUT0" data_type: {dtype} dims: {dims} }} ]
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_input") / "repo"
    write_model(
        root,
        "nan_inf_output",
        """
name: "nan_inf_output"
backend: "python"
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 6 ] } ]
""",
        NAN_INF,
    )
    write_model(root, "str_id", _config("str_id", "TYPE_STRING", "[ -1 ]"), ECHO_MODEL)
    write_model(
        root, "str_batch", _config("str_batch", "TYPE_STRING", "[ -1 ]", 8), ECHO_MODEL
    )
    write_model(
        root, "fp_any", _config("fp_any", "TYPE_FP32", "[ -1, -1 ]"), ECHO_MODEL
    )
    write_model(
        root, "fp_batch", _config("fp_batch", "TYPE_FP32", "[ -1 ]", 8), ECHO_MODEL
    )
    write_model(
        root, "scalar_1dim", _config("scalar_1dim", "TYPE_FP32", "[ 1 ]"), ECHO_MODEL
    )
    write_model(
        root, "scalar_2dim", _config("scalar_2dim", "TYPE_FP32", "[ 1, 1 ]"), ECHO_MODEL
    )
    return root


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[RunningServer]:
    # One server per kind for the module: each case compares against the same
    # expectations, so a difference names the case that shows it.
    with run_either(request.param, repo) as running:
        yield running


def _post(server: RunningServer, model: str, body: dict[str, Any]) -> tuple[int, Any]:
    """The status and the decoded JSON body of a JSON-only infer request."""
    host, port = server.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(
            "POST",
            f"/v2/models/{model}/infer",
            body=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw)
    finally:
        connection.close()


def _outputs(answer: Any) -> Any:
    """The parts of a JSON answer that must match (the id and version aside)."""
    if "outputs" not in answer:
        return answer
    return [
        (o["name"], o["datatype"], o["shape"], json.dumps(o.get("data")))
        for o in answer["outputs"]
    ]


def _infer(
    client: Any,
    module: Any,
    model: str,
    data: np.ndarray,
    dtype: str,
    binary: bool | None = None,
) -> tuple[str, Any]:
    """Infer with ``data`` as INPUT0; ("ok", shape, values) or ("error", message)."""
    tensor = module.InferInput("INPUT0", list(data.shape), dtype)
    if binary is None:
        tensor.set_data_from_numpy(data)
    else:
        tensor.set_data_from_numpy(data, binary_data=binary)
    try:
        result = client.infer(model, [tensor])
    except InferenceServerException as error:
        return ("error", error.message())
    out = result.as_numpy("OUTPUT0")
    # repr keeps NaN comparable and bytes exact (a NUL included)
    return ("ok", list(out.shape), repr(out.tolist()))


# --- L0_nan_inf ----------------------------------------------------------------


def test_nan_inf_output_as_json(server: RunningServer) -> None:
    """The raw JSON answer spells NaN and the infinities so a JSON reader takes it."""
    body = {
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1], "data": [1]}]
    }
    status, answer = _post(server, "nan_inf_output", body)
    assert status == 200
    assert _outputs(answer) == [
        ("OUTPUT0", "FP32", [6], "[NaN, Infinity, -Infinity, 1.0, 2.0, 3.0]")
    ]


@pytest.mark.parametrize("binary", [True, False])
def test_nan_inf_output_http_client(server: RunningServer, binary: bool) -> None:
    with httpclient.InferenceServerClient(server.http_url) as client:
        tensor = httpclient.InferInput("INPUT0", [1], "FP32")
        tensor.set_data_from_numpy(np.zeros(1, np.float32))
        wanted = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
        out = client.infer("nan_inf_output", [tensor], outputs=[wanted])
    assert repr(out.as_numpy("OUTPUT0").tolist()) == repr(
        [float("nan"), float("inf"), float("-inf"), 1.0, 2.0, 3.0]
    )


def test_nan_inf_output_grpc(server: RunningServer) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        seen = _infer(
            client, grpcclient, "nan_inf_output", np.zeros(1, np.float32), "FP32"
        )
    assert seen == (
        "ok",
        [6],
        repr([float("nan"), float("inf"), float("-inf"), 1.0, 2.0, 3.0]),
    )


# --- L0_nullchar_string / L0_string_io -----------------------------------------

STRINGS = [
    np.array([b"abc\0def"], dtype=object),
    np.array([b"", b"\0", b"\0\0x", "é".encode()], dtype=object),
    np.array([b"1", b"22", b"333"], dtype=object),
]
STRING_IDS = ["nul-inside", "empty-and-nul", "digits"]


@pytest.mark.parametrize("data", STRINGS, ids=STRING_IDS)
@pytest.mark.parametrize("binary", [True, False])
def test_strings_http(server: RunningServer, data: np.ndarray, binary: bool) -> None:
    """A string holding a NUL (L0_nullchar_string) or none comes back whole, sent
    as binary data or as JSON text."""
    with httpclient.InferenceServerClient(server.http_url) as client:
        seen = _infer(client, httpclient, "str_id", data, "BYTES", binary)
    assert seen == ("ok", list(data.shape), repr(data.tolist()))


@pytest.mark.parametrize("data", STRINGS, ids=STRING_IDS)
def test_strings_grpc(server: RunningServer, data: np.ndarray) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        seen = _infer(client, grpcclient, "str_id", data, "BYTES")
    assert seen == ("ok", list(data.shape), repr(data.tolist()))


def test_strings_json_text(server: RunningServer) -> None:
    """JSON strings (a NUL escaped as \\u0000 among them) are taken as their UTF-8
    bytes and come back as JSON text (L0_string_io's non-binary request)."""
    body = {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "BYTES",
                "shape": [1, 3],
                "data": ["abc\u0000def", "x", ""],
            }
        ]
    }
    status, answer = _post(server, "str_batch", body)
    assert (status, _outputs(answer)) == (
        200,
        [("OUTPUT0", "BYTES", [1, 3], json.dumps(["abc\u0000def", "x", ""]))],
    )


# --- L0_infer_zero ---------------------------------------------------------------

ZEROS: list[tuple[str, list[int], str]] = [
    ("fp_any", [0, 0], "FP32"),
    ("fp_any", [2, 0], "FP32"),
    ("fp_any", [0, 3], "FP32"),
    ("fp_batch", [1, 0], "FP32"),
    ("fp_batch", [3, 0], "FP32"),
    ("str_id", [0], "BYTES"),
    ("str_batch", [2, 0], "BYTES"),
]


def _zero(shape: list[int], dtype: str) -> np.ndarray:
    return np.zeros(shape, dtype=object if dtype == "BYTES" else np.float32)


@pytest.mark.parametrize(("model", "shape", "dtype"), ZEROS)
@pytest.mark.parametrize("binary", [True, False])
def test_zero_elements_http(
    server: RunningServer, model: str, shape: list[int], dtype: str, binary: bool
) -> None:
    """A tensor with no elements is accepted and echoed with its shape."""
    with httpclient.InferenceServerClient(server.http_url) as client:
        seen = _infer(client, httpclient, model, _zero(shape, dtype), dtype, binary)
    assert seen == (
        "ok",
        shape,
        "[]" if not shape or shape[0] == 0 else repr([[]] * shape[0]),
    )


@pytest.mark.parametrize(("model", "shape", "dtype"), ZEROS)
def test_zero_elements_grpc(
    server: RunningServer, model: str, shape: list[int], dtype: str
) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        seen = _infer(client, grpcclient, model, _zero(shape, dtype), dtype)
    assert seen == ("ok", shape, "[]" if shape[0] == 0 else repr([[]] * shape[0]))


def test_zero_elements_json_raw(server: RunningServer) -> None:
    """An empty "data" list with a zero dimension: the JSON answer, byte for byte
    in its outputs."""
    body = {
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 0], "data": []}]
    }
    status, answer = _post(server, "fp_any", body)
    assert (status, _outputs(answer)) == (200, [("OUTPUT0", "FP32", [2, 0], "[]")])


# --- L0_scalar_io ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "data"),
    [
        ("scalar_1dim", np.asarray([1], dtype=np.float32)),
        ("scalar_2dim", np.asarray([[1]], dtype=np.float32)),
    ],
)
def test_single_element_io(server: RunningServer, model: str, data: np.ndarray) -> None:
    """A one-element tensor of dims [1] or [1, 1] comes back as sent (gRPC)."""
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        seen = _infer(client, grpcclient, model, data, "FP32")
    assert seen == ("ok", list(data.shape), repr(data.tolist()))


# --- L0_input_validation: every input optional, none sent ------------------------

ALL_OPTIONAL = """
name: "input_all_optional"
backend: "python"
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] optional: true },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ -1 ] optional: true }
]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""
# OUTPUT0 = how many inputs the request carried.
COUNT_INPUTS = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", np.array([len(r.inputs())], dtype=np.float32))])
            for r in requests]
"""


def _raw(server: RunningServer, path: str, body: bytes) -> tuple[int, bytes]:
    host, port = server.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_no_inputs_to_an_all_optional_model(tmp_path: Path) -> None:
    """A request without inputs runs a model whose inputs are all optional; an HTTP
    body without "inputs" at all is judged the same on both servers."""
    write_model(tmp_path, "input_all_optional", ALL_OPTIONAL, COUNT_INPUTS)

    def scenario(kind: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with run_either(kind, tmp_path) as server:
            with grpcclient.InferenceServerClient(server.grpc_url) as client:
                out = client.infer("input_all_optional", [])
                seen["grpc"] = out.as_numpy("OUTPUT0").tolist()
            with httpclient.InferenceServerClient(server.http_url) as client:
                out = client.infer("input_all_optional", [])
                seen["http client"] = out.as_numpy("OUTPUT0").tolist()
            path = "/v2/models/input_all_optional/infer"
            for body in (b'{"inputs":[]}', b"{}", b'{"id":"7"}'):
                status, answer = _raw(server, path, body)
                seen[body.decode()] = (status, _outputs(json.loads(answer)))
        return seen

    seen = differential(scenario)
    assert seen["grpc"] == seen["http client"] == [0.0]


# --- L0_string_io: bytes that are not UTF-8 ---------------------------------------

NOT_UTF8 = np.array([b"\nF\n'\x01a\xfa\x03\x94", b"\x04\x1b\x931\xbf\x00\x00", b"ok"])


def test_non_utf8_strings(repo: Path) -> None:
    """Bytes that are not UTF-8 come back whole as binary data (HTTP, gRPC); asked
    for as a JSON output, both servers answer so that tritonclient fails alike."""

    def scenario(kind: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        data = NOT_UTF8.astype(object)
        with run_either(kind, repo) as server:
            with grpcclient.InferenceServerClient(server.grpc_url) as client:
                seen["grpc"] = _infer(client, grpcclient, "str_id", data, "BYTES")
            with httpclient.InferenceServerClient(server.http_url) as client:
                for binary_out in (True, False):
                    tensor = httpclient.InferInput("INPUT0", [3], "BYTES")
                    tensor.set_data_from_numpy(data, binary_data=True)
                    wanted = httpclient.InferRequestedOutput(
                        "OUTPUT0", binary_data=binary_out
                    )
                    try:
                        out = client.infer("str_id", [tensor], outputs=[wanted])
                        seen[f"http {binary_out}"] = repr(
                            out.as_numpy("OUTPUT0").tolist()
                        )
                    except InferenceServerException as error:
                        seen[f"http {binary_out}"] = (error.status(), error.message())
        return seen

    seen = differential(scenario)
    assert seen["grpc"] == ("ok", [3], repr(NOT_UTF8.tolist()))
    assert seen["http True"] == repr(NOT_UTF8.tolist())
    # As JSON, the server writes the bytes into the string as they are, and the
    # client cannot read the answer (the same answer from both servers).
    assert seen["http False"][0] is None
    assert seen["http False"][1].startswith("Failed to encode using UTF-8.")


# --- L0_input_validation: data that does not fill the shape (gRPC) ----------------

SIZED = """
name: "sized"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 8 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 8 ] } ]
"""
TWO_STRINGS = """
name: "two_strings"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_STRING dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_STRING dims: [ 16 ] }
]
output [ { name: "OUTPUT0" data_type: TYPE_STRING dims: [ 16 ] } ]
"""


def test_data_against_a_declared_shape(tmp_path: Path) -> None:
    """The shape says one size and the data holds another (the client's shape is
    overwritten after the data is set): the core's refusals, word for word."""
    write_model(tmp_path, "sized", SIZED, ECHO_MODEL)
    write_model(tmp_path, "two_strings", TWO_STRINGS, ECHO_MODEL)

    def strings(count: int) -> list[grpcclient.InferInput]:
        data = np.array([[str(i) for i in range(count)]], dtype=object)
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            tensor = grpcclient.InferInput(name, [1, count], "BYTES")
            tensor.set_data_from_numpy(data)
            tensor.set_shape([1, 16])
            inputs.append(tensor)
        return inputs

    def scenario(kind: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with (
            run_either(kind, tmp_path) as server,
            grpcclient.InferenceServerClient(server.grpc_url) as client,
        ):
            for count in (7, 8, 10):
                tensor = grpcclient.InferInput("INPUT0", [1, count], "FP32")
                tensor.set_data_from_numpy(np.ones([1, count], np.float32))
                tensor.set_shape([1, 8])
                try:
                    client.infer("sized", [tensor])
                    seen[f"fp32 {count}"] = "ok"
                except InferenceServerException as error:
                    seen[f"fp32 {count}"] = (error.status(), error.message())
            for count in (14, 16, 18):
                try:
                    client.infer("two_strings", strings(count))
                    seen[f"strings {count}"] = "ok"
                except InferenceServerException as error:
                    seen[f"strings {count}"] = (error.status(), error.message())
        return seen

    seen = differential(scenario)
    assert seen["fp32 8"] == seen["strings 16"] == "ok"
    assert "Expected 32, got 40" in seen["fp32 10"][1]
    assert "expected 16 string elements" in seen["strings 14"][1]
    assert "unexpected number of string elements 17" in seen["strings 18"][1]
