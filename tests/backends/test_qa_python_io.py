"""Tensors and arguments of Python models, after the cases of Triton's
L0_backend_python/python_test.py (init_args, bool, unicode, string, string_fixed,
non_contiguous), as differential tests: one repository, one server per kind for
the module (tritonx, and Triton 2.51 when TRITONX_REFERENCE_CMD is given); every
case asserts the same concrete answers on both, over HTTP and gRPC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, run_either
from testmodels import ECHO_MODEL, write_model

# The model answers with its initialize arguments, model_config reduced to its
# name, as JSON.
INIT_ARGS_MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.args = dict(args)
        self.args["model_config"] = json.loads(args["model_config"])["name"]

    def execute(self, requests):
        text = json.dumps(self.args, sort_keys=True).encode()
        out = pb_utils.Tensor("OUT", np.array([text], dtype=np.object_))
        return [pb_utils.InferenceResponse([out]) for _ in requests]
"""

# One string in, the same string as a numpy bytes_ array and as an object array,
# and empty arrays of both kinds.
STRINGS_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("AS_BYTES", data.astype(np.bytes_)),
                pb_utils.Tensor("AS_OBJECT", data.astype(np.object_)),
                pb_utils.Tensor("EMPTY_BYTES", np.array([], dtype=np.bytes_)),
                pb_utils.Tensor("EMPTY_OBJECT", np.array([], dtype=np.object_)),
            ]))
        return out
"""

# Outputs that are views of the input: a reshape, a transpose, a reordering.
NON_CONTIGUOUS_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", data.reshape([5, 2, 3, 2, 4])),
                pb_utils.Tensor("OUTPUT1", data.T),
                pb_utils.Tensor("OUTPUT2", np.transpose(data, [1, 0, 4, 2, 3])),
                pb_utils.Tensor("OUTPUT3", data[:, ::2, 1:3, :, ::3]),
            ]))
        return out
"""

FIVE_DIMS = "dims: [ -1, -1, -1, -1, -1 ]"

STRING_CASES = {
    "plain": b"123456",
    "emoji": "\U0001f600".encode(),
    "empty": b"",
    "trailing_nul": b"ab\x00\x00",
    "inner_nul": b"a\x00b",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_python_io") / "repo"
    write_model(
        root,
        "init_args",
        """
name: "init_args"
backend: "python"
max_batch_size: 64
input [ { name: "IN", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUT", data_type: TYPE_STRING, dims: [ 1 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
""",
        INIT_ARGS_MODEL,
    )
    write_model(
        root,
        "identity_bool",
        """
name: "identity_bool"
backend: "python"
max_batch_size: 64
input [ { name: "INPUT0", data_type: TYPE_BOOL, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_BOOL, dims: [ -1 ] } ]
""",
        ECHO_MODEL,
    )
    write_model(
        root,
        "strings",
        """
name: "strings"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [
  { name: "AS_BYTES", data_type: TYPE_STRING, dims: [ -1 ] },
  { name: "AS_OBJECT", data_type: TYPE_STRING, dims: [ -1 ] },
  { name: "EMPTY_BYTES", data_type: TYPE_STRING, dims: [ -1 ] },
  { name: "EMPTY_OBJECT", data_type: TYPE_STRING, dims: [ -1 ] }
]
""",
        STRINGS_MODEL,
    )
    write_model(
        root,
        "non_contiguous",
        f"""
name: "non_contiguous"
backend: "python"
input [ {{ name: "INPUT0", data_type: TYPE_FP32, {FIVE_DIMS} }} ]
output [
  {{ name: "OUTPUT0", data_type: TYPE_FP32, {FIVE_DIMS} }},
  {{ name: "OUTPUT1", data_type: TYPE_FP32, {FIVE_DIMS} }},
  {{ name: "OUTPUT2", data_type: TYPE_FP32, {FIVE_DIMS} }},
  {{ name: "OUTPUT3", data_type: TYPE_FP32, {FIVE_DIMS} }}
]
""",
        NON_CONTIGUOUS_MODEL,
    )
    return root


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[RunningServer]:
    with run_either(request.param, repo) as running:
        yield running


def _infer(
    server: RunningServer, protocol: str, model: str, name: str, data: np.ndarray
) -> dict[str, Any]:
    """{output: (datatype, shape, array)} of one request over ``protocol``."""
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    dtype = {np.dtype(np.bool_): "BOOL", np.dtype(np.float32): "FP32"}.get(
        data.dtype, "BYTES"
    )
    inputs = [module.InferInput(name, list(data.shape), dtype)]
    inputs[0].set_data_from_numpy(data)
    with module.InferenceServerClient(url) as client:
        result = client.infer(model, inputs)
    response = result.get_response()
    if protocol == "http":
        described = [
            (o["name"], o["datatype"], o["shape"]) for o in response["outputs"]
        ]
    else:
        described = [(o.name, o.datatype, list(o.shape)) for o in response.outputs]
    return {n: (t, s, result.as_numpy(n)) for n, t, s in described}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_initialize_arguments(server: RunningServer, repo: Path, protocol: str) -> None:
    seen = _infer(server, protocol, "init_args", "IN", np.zeros((1, 2), np.float32))
    datatype, shape, data = seen["OUT"]
    assert (datatype, shape) == ("BYTES", [1])
    args = json.loads(data[0])
    if not server.reference:
        # a documented tritonx extension (docs/architecture.md, docs/gpu.md): the
        # instance's CUDA stream, "0" for a CPU instance
        assert args.pop("tritonx_cuda_stream") == "0"
    assert args == {
        "model_config": "init_args",
        "model_instance_device_id": "0",
        "model_instance_kind": "CPU",
        "model_instance_name": "init_args_0_0",
        "model_name": "init_args",
        "model_repository": str(repo / "init_args"),
        "model_version": "1",
    }


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bool_identity(server: RunningServer, protocol: str) -> None:
    data = np.array([[True, False, True], [False, False, True]])
    seen = _infer(server, protocol, "identity_bool", "INPUT0", data)
    datatype, shape, out = seen["OUTPUT0"]
    assert (datatype, shape, out.dtype) == ("BOOL", [2, 3], np.bool_)
    assert out.tolist() == data.tolist()


@pytest.mark.parametrize("case", list(STRING_CASES))
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_string_outputs_of_either_numpy_kind(
    server: RunningServer, protocol: str, case: str
) -> None:
    """A string output made from a numpy bytes_ array loses trailing NULs (numpy
    drops them), one from an object array keeps them; empty arrays of either
    kind are empty outputs."""
    value = STRING_CASES[case]
    data = np.array([value], dtype=np.object_)
    seen = {
        name: (datatype, shape, out.tolist())
        for name, (datatype, shape, out) in _infer(
            server, protocol, "strings", "INPUT0", data
        ).items()
    }
    assert seen == {
        "AS_BYTES": ("BYTES", [1], [value.rstrip(b"\x00")]),
        "AS_OBJECT": ("BYTES", [1], [value]),
        "EMPTY_BYTES": ("BYTES", [0], []),
        "EMPTY_OBJECT": ("BYTES", [0], []),
    }


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_outputs_that_are_not_contiguous(server: RunningServer, protocol: str) -> None:
    data = np.arange(2 * 5 * 4 * 3 * 2, dtype=np.float32).reshape([2, 5, 4, 3, 2])
    seen = _infer(server, protocol, "non_contiguous", "INPUT0", data)
    expected = {
        "OUTPUT0": data.reshape([5, 2, 3, 2, 4]),
        "OUTPUT1": data.T,
        "OUTPUT2": np.transpose(data, [1, 0, 4, 2, 3]),
        "OUTPUT3": data[:, ::2, 1:3, :, ::3],
    }
    assert {n: (t, s) for n, (t, s, _) in seen.items()} == {
        n: ("FP32", list(e.shape)) for n, e in expected.items()
    }
    for name, want in expected.items():
        assert seen[name][2].tolist() == want.tolist(), name
