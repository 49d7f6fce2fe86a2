"""tritonx.api.frontend (Triton's ``tritonfrontend``): KServe HTTP and gRPC and the
metrics endpoint started on an in-process server, driven by the real tritonclient
and plain sockets; their options, errors, restrictions and lifecycle."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cloudutil import write_model
from serverutil import free_ports
from testmodels import ADD_SUB, ADD_SUB_PY, HELD_MODEL
from tritonclient.utils import InferenceServerException

import tritonx.api as api
from tritonx.api.frontend import (
    FeatureGroup,
    KServeGrpc,
    KServeHttp,
    Metrics,
    Protocols,
    RestrictedFeatures,
)

HELD_CONFIG = """
name: "held"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

# Answers with a tensor far larger than loopback's socket buffers (32 MB), so that
# evhttp is still writing it until the client has read most of it.
LARGE_ELEMENTS = 8 << 20
LARGE_CONFIG = """
name: "large"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""
LARGE_MODEL = f"""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for r in requests:
            value = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            out = np.full({LARGE_ELEMENTS}, value[0], np.float32)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("OUTPUT0", out)]))
        return responses
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    write_model(root, "add_sub", ADD_SUB, ADD_SUB_PY)
    write_model(root, "held", HELD_CONFIG, HELD_MODEL)
    write_model(root, "large", LARGE_CONFIG, LARGE_MODEL)
    return root


@pytest.fixture
def server(repo: Path) -> Iterator[api.Server]:
    running = api.Server(model_repository=str(repo), exit_timeout=10)
    running.start(wait_until_ready=True, timeout=60)
    yield running
    if running._state is not None:
        running.stop()


def _add_sub(
    client_module: Any, port: int, headers: dict[str, str] | None = None
) -> np.ndarray:
    """add_sub through tritonclient's ``http`` or ``grpc`` module: INPUT0 + 1."""
    client = client_module.InferenceServerClient(f"127.0.0.1:{port}")
    inputs = [
        client_module.InferInput("INPUT0", [4], "FP32"),
        client_module.InferInput("INPUT1", [4], "FP32"),
    ]
    inputs[0].set_data_from_numpy(np.arange(4, dtype=np.float32))
    inputs[1].set_data_from_numpy(np.ones(4, np.float32))
    try:
        return client.infer("add_sub", inputs, headers=headers).as_numpy("OUTPUT0")
    finally:
        client.close()


def _http_add_sub(port: int, headers: dict[str, str] | None = None) -> np.ndarray:
    return _add_sub(httpclient, port, headers)


def _grpc_add_sub(port: int, headers: dict[str, str] | None = None) -> np.ndarray:
    return _add_sub(grpcclient, port, headers)


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except (ConnectionRefusedError, ConnectionResetError):
        # Reset: the connection reached the backlog of a listener being closed.
        return True
    return False


def test_endpoints_serve_tritonclient_and_metrics(
    server: api.Server, caplog: pytest.LogCaptureFixture
) -> None:
    tritonx_logger = logging.getLogger("tritonx")
    tritonx_logger.addHandler(caplog.handler)  # whatever its propagation
    caplog.set_level(logging.INFO, logger="tritonx")
    http_port, grpc_port, metrics_port = free_ports(3)
    http = KServeHttp(server, KServeHttp.Options(port=http_port, thread_count=2))
    grpc = KServeGrpc(server, KServeGrpc.Options(port=grpc_port))
    metrics = Metrics(server, Metrics.Options(port=metrics_port))
    try:
        for endpoint in (http, grpc, metrics):
            endpoint.start()
    finally:
        tritonx_logger.removeHandler(caplog.handler)
    # The command line's words.
    assert f"Started HTTPService at 0.0.0.0:{http_port}" in caplog.text
    assert f"Started GRPCInferenceService at 0.0.0.0:{grpc_port}" in caplog.text
    assert f"Started Metrics Service at 0.0.0.0:{metrics_port}" in caplog.text
    expected = np.arange(4, dtype=np.float32) + 1
    np.testing.assert_array_equal(_http_add_sub(http_port), expected)
    np.testing.assert_array_equal(_grpc_add_sub(grpc_port), expected)
    # The same server behind both: the in-process API sees their requests.
    stats = server.model("add_sub").statistics()
    assert stats["model_stats"][0]["inference_count"] == 2
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as reply:
        text = reply.read().decode()
    assert 'nv_inference_request_success{model="add_sub",version="1"} 2' in text
    assert "nv_cpu_utilization" in text
    for endpoint in (http, grpc, metrics):
        endpoint.stop()
    assert all(_refuses(port) for port in (http_port, grpc_port, metrics_port))


def test_stopped_endpoint_starts_again(server: api.Server) -> None:
    (port,) = free_ports(1)
    http = KServeHttp(server, KServeHttp.Options(port=port))
    http.start()
    with pytest.raises(api.InvalidArgumentError, match="already started"):
        http.start()
    http.stop()
    http.stop()  # nothing to stop
    assert _refuses(port)
    http.start()
    assert http.port == port
    assert _http_add_sub(port)[0] == 1.0
    http.stop()


def test_context_manager_and_triton_older_spelling(server: api.Server) -> None:
    http_port, grpc_port = free_ports(2)
    with (
        KServeHttp.Server(server, KServeHttp.Options(port=http_port)),
        KServeGrpc.Server(server, KServeGrpc.Options(port=grpc_port)),
    ):
        assert _http_add_sub(http_port)[3] == 4.0
        assert _grpc_add_sub(grpc_port)[3] == 4.0
    assert _refuses(http_port) and _refuses(grpc_port)


@pytest.mark.parametrize("kind", ["http", "grpc", "metrics"])
def test_taken_port_is_unavailable(server: api.Server, kind: str) -> None:
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    endpoint = {
        "http": lambda: KServeHttp(server, KServeHttp.Options(port=port)),
        "grpc": lambda: KServeGrpc(server, KServeGrpc.Options(port=port)),
        "metrics": lambda: Metrics(server, Metrics.Options(port=port)),
    }[kind]()
    try:
        with pytest.raises(api.UnavailableError, match=r"already in use|Address"):
            endpoint.start()
    finally:
        holder.close()
    endpoint.stop()  # never started: nothing to do


def test_bad_options_are_invalid_arguments(server: api.Server) -> None:
    with pytest.raises(
        api.InvalidArgumentError, match=r"must be of type KServeHttp\.Options"
    ):
        KServeHttp(server, KServeGrpc.Options())  # type: ignore[arg-type]
    with pytest.raises(
        api.InvalidArgumentError, match=r"must be of type Metrics\.Options"
    ):
        Metrics(server, {"port": 1})
    with pytest.raises(api.InvalidArgumentError, match="port must be an integer"):
        KServeHttp.Options(port=70000)
    with pytest.raises(api.InvalidArgumentError, match="thread_count"):
        KServeHttp.Options(thread_count=0)
    with pytest.raises(api.InvalidArgumentError, match="keepalive_time_ms"):
        KServeGrpc.Options(keepalive_time_ms=-1)
    with pytest.raises(api.InvalidArgumentError, match="infer_compression_level"):
        KServeGrpc.Options(
            infer_compression_level=KServeGrpc.Grpc_compression_level.COUNT
        )
    with pytest.raises(api.InvalidArgumentError, match="Invalid protocols"):
        FeatureGroup("k", "v", ["inference"])  # type: ignore[list-item]
    features = RestrictedFeatures([FeatureGroup("k", "v", [Protocols.INFERENCE])])
    with pytest.raises(api.InvalidArgumentError, match="only belong to one group"):
        features.create_feature_group("k2", "v2", [Protocols.INFERENCE])
    (port,) = free_ports(1)
    bad_pattern = KServeHttp(
        server, KServeHttp.Options(port=port, header_forward_pattern="(")
    )
    with pytest.raises(api.InvalidArgumentError, match="header_forward_pattern"):
        bad_pattern.start()


def test_compression_level_enum_is_accepted(server: api.Server) -> None:
    (port,) = free_ports(1)
    level = KServeGrpc.Grpc_compression_level.HIGH
    options = KServeGrpc.Options(port=port, infer_compression_level=level)
    with KServeGrpc(server, options):
        assert _grpc_add_sub(port)[0] == 1.0


def test_endpoint_needs_a_started_server(repo: Path) -> None:
    idle = api.Server(model_repository=str(repo))
    with pytest.raises(api.InvalidArgumentError, match="Server not started"):
        KServeHttp(idle).start()


def test_restricted_features_guard_both_protocols(server: api.Server) -> None:
    http_port, grpc_port = free_ports(2)
    features = RestrictedFeatures()
    features.create_feature_group("infer-key", "secret", [Protocols.INFERENCE])
    assert '"protocols": [\n      "inference"\n    ]' in repr(features)
    http_options = KServeHttp.Options(port=http_port, restricted_features=features)
    grpc_options = KServeGrpc.Options(port=grpc_port, restricted_features=features)
    with KServeHttp(server, http_options), KServeGrpc(server, grpc_options):
        with pytest.raises(InferenceServerException, match="restricted"):
            _http_add_sub(http_port)
        with pytest.raises(InferenceServerException, match="restricted"):
            _grpc_add_sub(grpc_port)
        assert _http_add_sub(http_port, {"infer-key": "secret"})[0] == 1.0
        # gRPC headers carry Triton's prefix, as with --grpc-restricted-protocol.
        headers = {"triton-grpc-protocol-infer-key": "secret"}
        assert _grpc_add_sub(grpc_port, headers)[0] == 1.0
        # Other groups stay open.
        client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
        assert client.is_model_ready("add_sub")


def test_server_stop_drains_and_stops_its_endpoints(
    server: api.Server, repo: Path
) -> None:
    (port,) = free_ports(1)
    http = KServeHttp(server, KServeHttp.Options(port=port))
    http.start()
    answers: list[object] = []

    def ask() -> None:
        client = httpclient.InferenceServerClient(
            f"127.0.0.1:{port}", network_timeout=120
        )
        tensor = httpclient.InferInput("INPUT0", [1], "FP32")
        tensor.set_data_from_numpy(np.array([7.0], np.float32))
        try:
            answers.append(client.infer("held", [tensor]).as_numpy("OUTPUT0"))
        except Exception as error:  # the assertion below names it
            answers.append(error)

    caller = threading.Thread(target=ask)
    caller.start()
    held = repo / "held"
    for _ in range(6000):  # until the model holds the request (a minute at most)
        if (held / "ran-7").exists():
            break
        caller.join(0.01)
    assert (held / "ran-7").exists(), answers
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    # The request in flight is answered once the model lets it go.
    (held / "open").touch()
    caller.join(60)
    stopper.join(60)
    assert not stopper.is_alive()
    assert len(answers) == 1 and not isinstance(answers[0], Exception), answers
    assert _refuses(port)
    http.stop()  # stopped with the server: nothing to do
    with pytest.raises(api.InvalidArgumentError, match="Server not started"):
        http.start()


def test_stop_finishes_writing_an_answer_already_sent(server: api.Server) -> None:
    """An answer evhttp is still writing when the endpoint stops (here: the client
    has read only its head) reaches the client whole: stop waits for the write
    within the grace period instead of ending the loops under it."""
    (port,) = free_ports(1)
    endpoint = KServeHttp(server, KServeHttp.Options(port=port))
    endpoint.start()
    request = {
        "inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [3]}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/v2/models/large/infer", json.dumps(request))
        response = connection.getresponse()  # the head is out; the body is not
        assert response.status == 200
        stopper = threading.Thread(target=endpoint.stop)
        stopper.start()
        for _ in range(6000):  # until it has stopped accepting (a minute at most)
            if _refuses(port):
                break
        # Time for a stop that would not wait to end the loops (it waits here).
        stopper.join(0.5)
        try:
            body = response.read()
        except http.client.IncompleteRead as cut:
            pytest.fail(f"answer cut off after {len(cut.partial)} bytes")
    finally:
        connection.close()
    stopper.join(60)
    assert not stopper.is_alive()
    head_length = int(response.getheader("Inference-Header-Content-Length", "0"))
    head = json.loads(body[:head_length])
    assert head["outputs"][0]["shape"] == [LARGE_ELEMENTS]
    values = np.frombuffer(body[head_length:], np.float32)
    assert values.shape == (LARGE_ELEMENTS,) and bool((values == 3.0).all())
