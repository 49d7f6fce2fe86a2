"""End to end: ``python -m tritonx`` with python-backend models, driven by the real
``tritonclient.http`` / ``tritonclient.http.aio`` and by raw sockets."""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import json
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonx._native", reason="core not built")
if not hasattr(pytest.importorskip("tritonx.repository"), "ModelManager"):
    pytest.skip("model manager not written yet", allow_module_level=True)
pytest.importorskip("tritonx.backends.python_backend", reason="no python backend yet")

import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from grpcutil import wait_until
from serverutil import RunningServer, run_server
from tritonclient.utils import InferenceServerException

DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
ADD_SUB_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", (a + b).astype(np.float32)),
                pb_utils.Tensor("OUTPUT1", (a - b).astype(np.float32)),
            ]))
        return responses
"""
IDENTITY_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([
                pb_utils.Tensor(
                    "OUTPUT0",
                    pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy(),
                )
            ])
            for r in requests
        ]
"""


def _config_type(wire: str) -> str:
    return "TYPE_STRING" if wire == "BYTES" else f"TYPE_{wire}"


def _write(repo: Path, name: str, config: str, model_py: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(textwrap.dedent(config))
    (repo / name / "1" / "model.py").write_text(textwrap.dedent(model_py))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("http_repo")
    _write(
        root,
        "add_sub",
        """
        name: "add_sub"
        backend: "python"
        max_batch_size: 8
        input [
          { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
          { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
        ]
        output [
          { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
          { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
        ]
        """,
        ADD_SUB_PY,
    )
    for wire in DTYPES:
        name = f"identity_{wire.lower()}"
        _write(
            root,
            name,
            f"""
            name: "{name}"
            backend: "python"
            max_batch_size: 0
            input [ {{ name: "INPUT0" data_type: {_config_type(wire)} dims: [ -1 ] }} ]
            output [ {{ name: "OUTPUT0" data_type: {_config_type(wire)} dims: [ -1 ] }} ]
            """,
            IDENTITY_PY,
        )
    return root


@pytest.fixture(scope="module", params=["python", "native"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_server(
        repo,
        "--model-control-mode=explicit",
        "--load-model=*",
        "--allow-grpc=false",
        f"--http-engine={request.param}",
    ) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(server.http_url)
    yield c
    c.close()


def _request(
    server: RunningServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    reply = conn.getresponse()
    data = reply.read()
    conn.close()
    return reply.status, {k.lower(): v for k, v in reply.getheaders()}, data


def _add_sub_inputs(binary: bool) -> list[httpclient.InferInput]:
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    b = np.ones((1, 4), dtype=np.float32)
    inputs = [
        httpclient.InferInput("INPUT0", [1, 4], "FP32"),
        httpclient.InferInput("INPUT1", [1, 4], "FP32"),
    ]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    return inputs


def test_health_and_server_metadata(
    server: RunningServer, client: httpclient.InferenceServerClient
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "triton"
    # Triton 2.51's list, in its order (cuda_shared_memory only where CUDA works).
    assert [e for e in meta["extensions"] if e != "cuda_shared_memory"] == [
        "classification",
        "sequence",
        "model_repository",
        "model_repository(unload_dependents)",
        "schedule_policy",
        "model_configuration",
        "system_shared_memory",
        "binary_tensor_data",
        "parameters",
        "statistics",
        "trace",
        "logging",
    ]
    assert _request(server, "GET", "/v2/health/live")[::2] == (200, b"")
    assert _request(server, "POST", "/v2/health/live")[::2] == (
        405,
        b'{"error":"Method Not Allowed"}',
    )
    assert _request(server, "GET", "/v2/nothing")[::2] == (
        404,
        b'{"error":"Not Found"}',
    )


def test_model_metadata_ready_config_stats(
    server: RunningServer, client: httpclient.InferenceServerClient
) -> None:
    meta = client.get_model_metadata("add_sub")
    assert meta["platform"] == "python"
    assert meta["inputs"][0] == {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}
    assert client.is_model_ready("add_sub")
    assert client.is_model_ready("add_sub", "1")
    assert not client.is_model_ready("add_sub", "2")
    assert _request(server, "GET", "/v2/models/nope/ready")[::2] == (
        400,
        b'{"error":"Model version not ready"}',
    )
    status, _, body = _request(server, "GET", "/v2/models/nope")
    assert status == 404
    assert json.loads(body) == {
        "error": "Request for unknown model: 'nope' is not found"
    }
    config = client.get_model_config("add_sub")
    assert config["max_batch_size"] == 8 and config["backend"] == "python"
    client.infer("add_sub", _add_sub_inputs(True))
    stats = client.get_inference_statistics("add_sub")["model_stats"][0]
    assert stats["version"] == "1"
    for key in ("success", "fail", "queue", "cache_hit", "cache_miss"):
        assert set(stats["inference_stats"][key]) == {"count", "ns"}
    assert stats["inference_stats"]["success"]["count"] >= 1
    everything = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in everything} >= {"add_sub", "identity_fp32"}
    status, _, body = _request(server, "GET", "/v2/models/nope/stats")
    assert status == 400
    assert json.loads(body) == {"error": "requested model 'nope' is not available"}


@pytest.mark.parametrize("binary", [True, False])
def test_add_sub_json_and_binary(
    client: httpclient.InferenceServerClient, binary: bool
) -> None:
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=not binary),
    ]
    result = client.infer(
        "add_sub", _add_sub_inputs(binary), outputs=outputs, request_id="abc"
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), [[1, 2, 3, 4]])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), [[-1, 0, 1, 2]])
    response = result.get_response()
    assert response["id"] == "abc"
    assert response["model_name"] == "add_sub" and response["model_version"] == "1"


@pytest.mark.parametrize("wire", list(DTYPES))
@pytest.mark.parametrize("binary", [True, False])
def test_identity_every_datatype(
    client: httpclient.InferenceServerClient, wire: str, binary: bool
) -> None:
    if wire == "BYTES":
        data = np.array([b"a", b"", "héllo".encode()], dtype=np.object_)
    elif wire == "BOOL":
        data = np.array([True, False, True])
    else:
        data = np.array([0, 1, 100], dtype=DTYPES[wire])
    tensor = httpclient.InferInput("INPUT0", [3], wire)
    name = f"identity_{wire.lower()}"
    if wire == "FP16" and not binary:
        with pytest.raises(InferenceServerException, match="FP16 data via JSON"):
            tensor.set_data_from_numpy(data, binary_data=False)
            client.infer(name, [tensor])
        return
    tensor.set_data_from_numpy(data, binary_data=binary)
    out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
    result = client.infer(name, [tensor], outputs=[out])
    got = result.as_numpy("OUTPUT0")
    if wire == "BYTES":
        # Binary outputs come back as bytes, JSON ones as str.
        assert [x.encode() if isinstance(x, str) else bytes(x) for x in got] == list(
            data
        )
    else:
        np.testing.assert_array_equal(got, data)


def test_fp16_json_output_is_rejected(server: RunningServer) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP16",
                    "shape": [2],
                    "parameters": {"binary_data_size": 4},
                }
            ],
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": False}}],
        }
    ).encode()
    body = header + np.ones(2, np.float16).tobytes()
    status, _, data = _request(
        server,
        "POST",
        "/v2/models/identity_fp16/infer",
        body,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 400
    assert "sending FP16 data via JSON is not supported" in json.loads(data)["error"]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compression_both_ways(
    client: httpclient.InferenceServerClient, algorithm: str
) -> None:
    result = client.infer(
        "add_sub",
        _add_sub_inputs(True),
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), [[1, 2, 3, 4]])


def test_response_content_encoding_header(server: RunningServer) -> None:
    body = json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [2], "data": [1, 2]}
            ]
        }
    ).encode()
    status, headers, data = _request(
        server,
        "POST",
        "/v2/models/identity_fp32/infer",
        gzip.compress(body),
        {"Content-Encoding": "gzip", "Accept-Encoding": "deflate;q=0.5, gzip;q=0.9"},
    )
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(data))["outputs"][0]["data"] == [1.0, 2.0]


def test_chunked_upload(server: RunningServer) -> None:
    body = json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "datatype": "INT32", "shape": [3], "data": [1, 2, 3]}
            ]
        }
    ).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
    conn.request(
        "POST",
        "/v2/models/identity_int32/infer",
        body=iter([body[:7], body[7:20], body[20:]]),
    )
    reply = conn.getresponse()
    assert reply.status == 200
    assert json.loads(reply.read())["outputs"][0]["data"] == [1, 2, 3]


def test_raw_binary_request(server: RunningServer) -> None:
    data = np.arange(5, dtype=np.float32)
    status, headers, body = _request(
        server,
        "POST",
        "/v2/models/identity_fp32/infer",
        data.tobytes(),
        {"Inference-Header-Content-Length": "0"},
    )
    assert status == 200
    assert headers["content-type"] == "application/octet-stream"
    hlen = int(headers["inference-header-content-length"])
    doc = json.loads(body[:hlen])
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 20}
    np.testing.assert_array_equal(np.frombuffer(body[hlen:], np.float32), data)
    status, _, body = _request(
        server,
        "POST",
        "/v2/models/add_sub/infer",
        data.tobytes(),
        {"Inference-Header-Content-Length": "0"},
    )
    assert status == 400
    assert "Raw request must only have 1 input" in json.loads(body)["error"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"inputs": [', 500, "failed to parse the request JSON buffer"),
        (b"{}", 500, "Unable to parse 'inputs'"),
        (
            b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[2],"data":[1]}]}',
            500,
            "Unable to parse 'data': Shape does not match true shape of 'data' field",
        ),
        (
            b'{"inputs":[{"name":"INPUT0","datatype":"FP64","shape":[1],"data":[1]}]}',
            400,
            "inference input 'INPUT0' data-type is 'FP64', but model 'identity_fp32' "
            "expects 'FP32'",
        ),
        (
            b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1],"data":[1]}],'
            b'"parameters":{"triton_x":1}}',
            400,
            "parameter keys starting with 'triton_' are reserved",
        ),
    ],
)
def test_infer_errors(
    server: RunningServer, body: bytes, status: int, message: str
) -> None:
    got_status, _, data = _request(
        server, "POST", "/v2/models/identity_fp32/infer", body
    )
    assert got_status == status
    assert message in json.loads(data)["error"]


def test_unknown_model_infer(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", _add_sub_inputs(True))
    assert info.value.status() == "404"
    assert "Request for unknown model: 'nope' is not found" in info.value.message()


def test_parameters_priority_timeout_pass_through(
    client: httpclient.InferenceServerClient,
) -> None:
    result = client.infer(
        "add_sub",
        _add_sub_inputs(True),
        priority=1,
        timeout=10_000_000,
        parameters={"custom": "value"},
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), [[1, 2, 3, 4]])


def test_keep_alive_and_pipelining(server: RunningServer) -> None:
    body = b'{"inputs":[{"name":"INPUT0","datatype":"INT64","shape":[1],"data":[%d]}]}'
    requests = b"".join(
        b"POST /v2/models/identity_int64/infer HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body % i), body % i)
        for i in range(5)
    )
    with socket.create_connection(("127.0.0.1", server.ports["http"]), timeout=30) as s:
        s.sendall(requests)
        buf = b""
        values: list[int] = []
        while len(values) < 5:
            chunk = s.recv(65536)
            assert chunk
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                length = int(
                    head.lower().split(b"\r\ncontent-length: ")[1].split(b"\r\n")[0]
                )
                if len(rest) < length:
                    break
                values.append(json.loads(rest[:length])["outputs"][0]["data"][0])
                buf = rest[length:]
    assert values == [0, 1, 2, 3, 4]


def test_oversized_input(server: RunningServer) -> None:
    status, _, data = _request(
        server,
        "POST",
        "/v2/models/identity_uint8/infer",
        b"\0" * (64 * 1024 * 1024 + 1),
        {"Inference-Header-Content-Length": "0"},
    )
    assert status == 400
    assert "exceeds the maximum allowed value" in json.loads(data)["error"]


def test_repository_index_load_unload(
    server: RunningServer, client: httpclient.InferenceServerClient
) -> None:
    index = client.get_model_repository_index()
    assert {"name": "add_sub", "version": "1", "state": "READY"} in index
    client.unload_model("identity_int8")
    assert not client.is_model_ready("identity_int8")
    client.load_model("identity_int8")
    assert client.is_model_ready("identity_int8")
    config = json.dumps(
        {
            "backend": "python",
            "max_batch_size": 0,
            "input": [{"name": "INPUT0", "data_type": "TYPE_INT8", "dims": [-1]}],
            "output": [{"name": "OUTPUT0", "data_type": "TYPE_INT8", "dims": [-1]}],
        }
    )
    client.load_model(
        "uploaded", config=config, files={"file:1/model.py": IDENTITY_PY.encode()}
    )
    assert client.is_model_ready("uploaded")
    client.unload_model("uploaded", unload_dependents=True)
    # The unload is answered when the model stops serving (as Triton's); the
    # server is ready again once it is finalized, before the next test.
    wait_until(client.is_server_ready, "the unload to finish")
    status, _, data = _request(
        server, "POST", "/v2/repository/other/models/add_sub/load", b""
    )
    assert status == 501
    assert json.loads(data) == {
        "error": "'repository_name' specification is not supported"
    }
    assert base64  # files are sent base64-encoded by the client


def test_aio_client(server: RunningServer) -> None:
    async def run() -> None:
        client = aiohttpclient.InferenceServerClient(server.http_url)
        try:
            assert await client.is_server_ready()
            results = await asyncio.gather(
                *(client.infer("add_sub", _add_sub_inputs(True)) for _ in range(8))
            )
            for result in results:
                np.testing.assert_array_equal(
                    result.as_numpy("OUTPUT1"), [[-1, 0, 1, 2]]
                )
        finally:
            await client.close()

    asyncio.run(run())
