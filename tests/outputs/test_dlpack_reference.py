"""pb_utils.Tensor's DLPack behaviour against the real Triton (python backend, numpy
only, as the reference image has no torch): a to_dlpack/from_dlpack round trip as an
output, is_cpu() on inputs and on the round trip, and the texts of the two refusals
(BYTES tensors, non-contiguous producers). Runs when TRITONX_REFERENCE_CMD is set."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from serverutil import reference_command, run_reference, run_server

pytestmark = pytest.mark.skipif(
    reference_command() is None, reason="TRITONX_REFERENCE_CMD unset"
)

CONFIG = """
name: "dl"
backend: "python"
max_batch_size: 0
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 3 ] } ]
output [
  { name: "A", data_type: TYPE_FP32, dims: [ 3 ] },
  { name: "CHECKS", data_type: TYPE_BOOL, dims: [ 2 ] },
  { name: "MESSAGES", data_type: TYPE_STRING, dims: [ 2 ] }
]
"""

MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


def refusal(call):
    try:
        call()
    except Exception as exc:
        return str(exc)
    return "accepted"


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            given = pb_utils.get_input_tensor_by_name(request, "IN")
            doubled = pb_utils.Tensor("X", given.as_numpy() * 2)
            again = pb_utils.Tensor.from_dlpack("A", doubled.to_dlpack())
            strings = pb_utils.Tensor("S", np.array([b"x"], dtype=np.object_))
            strided = np.arange(6, dtype=np.float32).reshape(2, 3)[:, ::2]
            messages = [
                refusal(strings.to_dlpack),
                refusal(lambda: pb_utils.Tensor.from_dlpack("T", strided)),
            ]
            responses.append(pb_utils.InferenceResponse([
                again,
                pb_utils.Tensor("CHECKS", np.array([given.is_cpu(), again.is_cpu()])),
                pb_utils.Tensor("MESSAGES", np.array(messages, dtype=np.object_)),
            ]))
        return responses
"""


def _answer(url: str) -> tuple[list[float], list[bool], list[str]]:
    client = httpclient.InferenceServerClient(url)
    given = httpclient.InferInput("IN", [3], "FP32")
    given.set_data_from_numpy(np.array([1.0, 2.0, 3.0], np.float32))
    result = client.infer("dl", [given])
    client.close()
    messages = [m.decode() for m in result.as_numpy("MESSAGES")]
    return (
        result.as_numpy("A").tolist(),
        result.as_numpy("CHECKS").tolist(),
        messages,
    )


def test_dlpack_round_trip_and_refusals_match_triton(tmp_path: Path) -> None:
    model = tmp_path / "dl"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(CONFIG)
    (model / "1" / "model.py").write_text(textwrap.dedent(MODEL))
    with run_reference([tmp_path]) as server:
        expected = _answer(server.http_url)
    with run_server([tmp_path]) as server:
        ours = _answer(server.http_url)
    assert expected[0] == [2.0, 4.0, 6.0]
    assert ours == expected
