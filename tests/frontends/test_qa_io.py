"""The wire-visible part of Triton's L0_io QA for the Python backend, as a
differential test: its FP32 add/sub model (max_batch_size 64, CPU instance) and the
"fan" ensemble around it, whose nop steps pass tensors through and whose last two
steps each take one tensor on both their inputs. Each request runs against
tritonx and, when TRITONX_REFERENCE_CMD is given, against Triton 2.51, over HTTP
and gRPC; both must answer the sums and differences.

Not ported: L0_io's memory_alloc tool drives the C API with inputs and outputs
placed on given devices (GPU and pinned memory, host policies), and its dlpack
add/sub model is tests/outputs/test_dlpack_reference.py's."""

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

IO = """
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] },
        { name: "INPUT1" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] },
         { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 16 ] } ]
"""

# OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1; the nop answers its inputs.
MODEL = """
import triton_python_backend_utils as pb_utils

NOP = {nop}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            first, second = (a, b) if NOP else (a + b, a - b)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", first), pb_utils.Tensor("OUTPUT1", second)]))
        return responses
"""


def _step(model: str, inputs: tuple[str, str], outputs: dict[str, str]) -> str:
    maps = [
        f'input_map {{ key: "INPUT{i}" value: "{name}" }}'
        for i, name in enumerate(inputs)
    ]
    maps += [f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
    return f'{{ model_name: "{model}" model_version: -1 {" ".join(maps)} }}'


FAN = (
    'name: "fan_python_float32_float32_float32"\nplatform: "ensemble"\n'
    "max_batch_size: 64\n"
    + IO
    + "ensemble_scheduling { step [ "
    + ", ".join(
        [
            _step(
                "nop",
                ("INPUT0", "INPUT1"),
                {"OUTPUT0": "same_input0", "OUTPUT1": "same_input1"},
            ),
            _step(
                "python_float32_float32_float32",
                ("same_input0", "same_input1"),
                {"OUTPUT0": "same_output0", "OUTPUT1": "same_output1"},
            ),
            _step("nop", ("same_output0", "same_output0"), {"OUTPUT0": "OUTPUT0"}),
            _step("nop", ("same_output1", "same_output1"), {"OUTPUT1": "OUTPUT1"}),
        ]
    )
    + " ] }\n"
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_io")
    for name, nop in (("python_float32_float32_float32", False), ("nop", True)):
        config = (
            f'name: "{name}"\nbackend: "python"\nmax_batch_size: 64\n{IO}'
            "instance_group [ { kind: KIND_CPU } ]\n"
        )
        write_model(root, name, config, MODEL.format(nop=nop))
    (root / "fan_python_float32_float32_float32" / "1").mkdir(parents=True)
    (root / "fan_python_float32_float32_float32" / "config.pbtxt").write_text(FAN)
    return root


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[RunningServer]:
    with run_either(request.param, repo) as running:
        yield running


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize(
    "model", ["python_float32_float32_float32", "fan_python_float32_float32_float32"]
)
def test_add_sub(server: RunningServer, model: str, batch: int, protocol: str) -> None:
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    a = np.arange(batch * 16, dtype=np.float32).reshape(batch, 16)
    b = np.full((batch, 16), 0.5, dtype=np.float32)
    inputs = []
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        tensor = module.InferInput(name, [batch, 16], "FP32")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    with module.InferenceServerClient(url) as client:
        result = client.infer(model, inputs)
    assert result.as_numpy("OUTPUT0").tolist() == (a + b).tolist()
    assert result.as_numpy("OUTPUT1").tolist() == (a - b).tolist()
