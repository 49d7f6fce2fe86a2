"""``--grpc-restricted-protocol`` and ``--grpc-header-forward-pattern`` through the wire.

A real ``tritonx-server`` with a Python model that returns the request parameters it
saw; clients are the real ``tritonclient.grpc`` (``headers=``) and raw grpc channels.
Messages and groups were checked against tritonserver 2.51.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

pytest.importorskip("tritonx._native", reason="core not built")

import tritonclient.grpc as grpcclient
from serverutil import RunningServer, run_server, server_command, server_env
from tritonclient.utils import InferenceServerException

CONFIG = """
name: "params"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] } ]
"""
MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            text = np.array([[request.parameters().encode()]] * len(rows), dtype=object)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("PARAMS", text)]))
        return out
"""

SERVICE = "/inference.GRPCInferenceService/"
INFER_KEY = {"triton-grpc-protocol-infer-key": "i-secret"}
ADMIN_KEY = {"triton-grpc-protocol-admin": "a-secret"}


def _repo(root: Path) -> Path:
    version = root / "repo" / "params" / "1"
    version.mkdir(parents=True)
    (root / "repo" / "params" / "config.pbtxt").write_text(textwrap.dedent(CONFIG))
    (version / "model.py").write_text(textwrap.dedent(MODEL))
    return root / "repo"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _repo(tmp_path_factory.mktemp("restricted"))


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    with run_server(
        repo,
        # Two flags, one with two groups: each group keeps its own key.
        "--grpc-restricted-protocol=inference:infer-key=i-secret",
        "--grpc-restricted-protocol=model-config,model-repository:admin=a-secret",
        "--grpc-header-forward-pattern=^x-fwd-",
        "--allow-metrics=false",
    ) as running:
        yield running


@pytest.fixture()
def client(server: RunningServer) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


def _input() -> grpcclient.InferInput:
    inp = grpcclient.InferInput("INPUT0", [1, 1], "FP32")
    inp.set_data_from_numpy(np.ones((1, 1), dtype=np.float32))
    return inp


def _params(result: Any) -> dict[str, Any]:
    seen: dict[str, Any] = json.loads(result.as_numpy("PARAMS")[0][0])
    return seen


def _unavailable(fn: Any, header: str) -> None:
    with pytest.raises(InferenceServerException) as info:
        fn()
    assert info.value.status() == "StatusCode.UNAVAILABLE"
    assert info.value.message() == (
        f"This protocol is restricted, expecting header '{header}'"
    )


def test_inference_needs_its_header(client: grpcclient.InferenceServerClient) -> None:
    _unavailable(
        lambda: client.infer("params", [_input()]),
        "triton-grpc-protocol-infer-key",
    )
    _unavailable(
        lambda: client.infer(
            "params", [_input()], headers={"triton-grpc-protocol-infer-key": "wrong"}
        ),
        "triton-grpc-protocol-infer-key",
    )
    # Another group's header does not open this one.
    _unavailable(
        lambda: client.infer("params", [_input()], headers=ADMIN_KEY),
        "triton-grpc-protocol-infer-key",
    )
    assert _params(client.infer("params", [_input()], headers=INFER_KEY)) == {}


def test_each_group_of_a_flag_is_restricted(
    client: grpcclient.InferenceServerClient,
) -> None:
    _unavailable(
        lambda: client.get_model_config("params"), "triton-grpc-protocol-admin"
    )
    _unavailable(
        lambda: client.get_model_repository_index(), "triton-grpc-protocol-admin"
    )
    assert client.get_model_config("params", headers=ADMIN_KEY).config.name == "params"
    assert client.get_model_repository_index(headers=ADMIN_KEY).models


def test_unrestricted_groups_need_no_header(
    client: grpcclient.InferenceServerClient,
) -> None:
    assert client.is_server_live()
    assert client.is_model_ready("params")
    assert client.get_server_metadata().name
    assert client.get_inference_statistics("params").model_stats


def test_stream_is_refused_before_any_request(
    client: grpcclient.InferenceServerClient,
) -> None:
    errors: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: errors.put(error))
    # The stream may already be closed by the time the request is sent.
    with contextlib.suppress(InferenceServerException):
        client.async_stream_infer("params", [_input()])
    error = errors.get(timeout=30)
    client.stop_stream()
    assert error is not None
    assert "This protocol is restricted, expecting header " in str(error)
    assert "'triton-grpc-protocol-infer-key'" in str(error)


def test_stream_with_header_forwards_headers(
    client: grpcclient.InferenceServerClient,
) -> None:
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(
        callback=lambda result, error: results.put((result, error)),
        headers={**INFER_KEY, "x-fwd-stream": "s1"},
    )
    client.async_stream_infer("params", [_input()])
    result, error = results.get(timeout=30)
    client.stop_stream()
    assert error is None
    assert _params(result) == {"x-fwd-stream": "s1"}


def test_matching_headers_become_string_parameters(
    client: grpcclient.InferenceServerClient,
) -> None:
    result = client.infer(
        "params",
        [_input()],
        headers={**INFER_KEY, "x-fwd-user": "alice", "x-other": "not forwarded"},
        parameters={"custom": 7},
    )
    assert _params(result) == {"custom": 7, "x-fwd-user": "alice"}


def test_a_header_wins_over_a_parameter_of_the_same_name(
    client: grpcclient.InferenceServerClient,
) -> None:
    result = client.infer(
        "params",
        [_input()],
        headers={**INFER_KEY, "x-fwd-who": "header"},
        parameters={"x-fwd-who": "parameter"},
    )
    assert _params(result) == {"x-fwd-who": "header"}


def _forwarded(repo: Path, pattern: str, headers: dict[str, str]) -> dict[str, Any]:
    with run_server(
        repo, f"--grpc-header-forward-pattern={pattern}", "--allow-metrics=false"
    ) as running:
        c = grpcclient.InferenceServerClient(running.grpc_url)
        try:
            return _params(c.infer("params", [_input()], headers=headers))
        finally:
            c.close()


def test_pattern_is_case_insensitive_unless_it_says_otherwise(repo: Path) -> None:
    # gRPC metadata keys are lower case on the wire: an upper-case pattern matches
    # them only because tritonserver matches case-insensitively by default.
    headers = {"my_header_1": "v1", "header_2": "v2"}
    assert _forwarded(repo, "MY_HEADER.*", headers) == {"my_header_1": "v1"}
    assert _forwarded(repo, "(?-i)MY_HEADER.*", headers) == {}


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (
            "--grpc-restricted-protocol=foo:k=v",
            "unknown restricted protocol 'foo'",
        ),
        (
            "--grpc-restricted-protocol=inference",
            "--grpc-restricted-protocol option format is "
            "'<config name>:<setting>=<value>'. Got inference",
        ),
        (
            "--grpc-restricted-protocol=inference,health:k=v "
            "--grpc-restricted-protocol=health:a=b",
            "restricted protocol 'health' can not be specified in multiple config "
            "groups",
        ),
    ],
)
def test_bad_restricted_protocol_flags_stop_the_server(
    repo: Path, flag: str, message: str
) -> None:
    result = subprocess.run(
        server_command([repo], flag.split()),
        capture_output=True,
        text=True,
        timeout=120,
        env=server_env(),
    )
    assert result.returncode == 1
    assert 'Bad option: "--grpc-restricted-protocol".' in result.stderr
    assert message in result.stderr


def test_bad_forward_pattern_stops_the_server(repo: Path) -> None:
    with run_server(
        repo, "--grpc-header-forward-pattern=(", expect_ready=False
    ) as running:
        assert running.process.wait(timeout=60) != 0
    assert "invalid --grpc-header-forward-pattern '('" in running.log_text()


def test_raw_calls_without_header_are_refused(server: RunningServer) -> None:
    channel = grpc.insecure_channel(server.grpc_url)
    try:
        for rpc, header in (
            ("ModelInfer", "triton-grpc-protocol-infer-key"),
            ("ModelConfig", "triton-grpc-protocol-admin"),
            ("RepositoryModelLoad", "triton-grpc-protocol-admin"),
        ):
            call = channel.unary_unary(
                SERVICE + rpc,
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            with pytest.raises(grpc.RpcError) as info:
                call(b"", timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert info.value.details() == (
                f"This protocol is restricted, expecting header '{header}'"
            )
    finally:
        channel.close()
