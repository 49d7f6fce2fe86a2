"""Triton's L0_client_nobatch QA as a differential test: requests with and without
the batch dimension to a batching model (max_batch_size 8) and to a non-batching
one, over HTTP and gRPC; each runs against tritonx and, when
TRITONX_REFERENCE_CMD is given, against Triton 2.51, and both must give the
expected answer (the refusals word for word). The models are L0_client_nobatch's
add/sub with INT32 inputs and INT8 outputs, as Python models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, run_either
from testmodels import write_model
from tritonclient.utils import InferenceServerException

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [
  {{ name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] }},
  {{ name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] }}
]
output [
  {{ name: "OUTPUT0", data_type: TYPE_INT8, dims: [ 16 ] }},
  {{ name: "OUTPUT1", data_type: TYPE_INT8, dims: [ 16 ] }}
]
"""

ADD_SUB_INT8 = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", (a + b).astype(np.int8)),
                pb_utils.Tensor("OUTPUT1", (a - b).astype(np.int8))]))
        return responses
"""

# Both inputs have the refused shape; Triton 2.51 names INPUT1.
PREFIX = "[request id: <id_unknown>] unexpected shape for input 'INPUT1' for model "
BATCH_NOTE = (
    ". NOTE: Setting a non-zero max_batch_size in the model config requires a batch "
    "dimension to be prepended to each input shape. If you want to specify the full "
    "shape including the batch dim in your input dims config, try setting "
    "max_batch_size to zero. See the model configuration docs for more info on "
    "max_batch_size."
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_nobatch")
    for name, max_batch in (("batching", 8), ("nobatch", 0)):
        config = CONFIG.format(name=name, max_batch=max_batch)
        write_model(root, name, config, ADD_SUB_INT8)
    return root


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[RunningServer]:
    with run_either(request.param, repo) as running:
        yield running


def _infer(server: RunningServer, protocol: str, model: str, shape: list[int]) -> Any:
    """Both outputs as lists, or the refusal's (status, message)."""
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    a = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    b = np.full(shape, 3, dtype=np.int32)
    inputs = []
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        tensor = module.InferInput(name, shape, "INT32")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    outputs = [module.InferRequestedOutput(f"OUTPUT{i}") for i in range(2)]
    client = module.InferenceServerClient(url)
    try:
        result = client.infer(model, inputs, outputs=outputs)
    except InferenceServerException as error:
        return (error.status(), error.message())
    finally:
        client.close()
    return [result.as_numpy(f"OUTPUT{i}").tolist() for i in range(2)]


def _expected(shape: list[int]) -> list[Any]:
    total = np.arange(16, dtype=np.int8).reshape(shape)
    return [(total + 3).tolist(), (total - 3).tolist()]


PROTOCOLS = ["http", "grpc"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nobatch_request_for_batching_model(
    server: RunningServer, protocol: str
) -> None:
    """[16] reads as a batch of 16, past max_batch_size: refused for that."""
    assert _infer(server, protocol, "batching", [16]) == (
        "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT",
        "[request id: <id_unknown>] inference request batch-size must be <= 8 for "
        "'batching'",
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_short_nobatch_request_for_batching_model(
    server: RunningServer, protocol: str
) -> None:
    """[4] reads as a batch of 4 of shape []: the shape is refused, with Triton's
    note on max_batch_size."""
    assert _infer(server, protocol, "batching", [4]) == (
        "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT",
        PREFIX + "'batching'. Expected [-1,16], got [4]" + BATCH_NOTE,
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_batch_request_for_nobatching_model(
    server: RunningServer, protocol: str
) -> None:
    assert _infer(server, protocol, "nobatch", [1, 16]) == (
        "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT",
        PREFIX + "'nobatch'. Expected [16], got [1,16]. ",
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nobatch_request_for_nobatching_model(
    server: RunningServer, protocol: str
) -> None:
    assert _infer(server, protocol, "nobatch", [16]) == _expected([16])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_batch_request_for_batching_model(server: RunningServer, protocol: str) -> None:
    assert _infer(server, protocol, "batching", [1, 16]) == _expected([1, 16])
