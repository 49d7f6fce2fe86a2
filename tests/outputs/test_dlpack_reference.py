"""pb_utils.Tensor's DLPack behaviour against the real Triton (python backend, numpy
only, as the reference image has no torch): a to_dlpack/from_dlpack round trip as an
output, is_cpu() on inputs and on the round trip, and the texts of the two refusals
(BYTES tensors, non-contiguous producers), and that a read-only producer's memory is
not written through as_numpy(). Runs when TRITONX_REFERENCE_CMD is set."""

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
  { name: "MESSAGES", data_type: TYPE_STRING, dims: [ 2 ] },
  { name: "WRITES", data_type: TYPE_STRING, dims: [ 1 ] }
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


def write_through(producer):
    # What writing into from_dlpack(producer).as_numpy() does, and to the producer.
    try:
        view = pb_utils.Tensor.from_dlpack("W", producer).as_numpy()
    except Exception as exc:
        return "refused: " + type(exc).__name__
    try:
        view[0] = 42
        outcome = "written"
    except ValueError:
        outcome = "write refused"
    return outcome + (", producer changed" if producer[0] == 42 else ", producer intact")


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
            read_only = np.arange(3, dtype=np.float32)
            read_only.flags.writeable = False
            writes = [write_through(read_only)]
            responses.append(pb_utils.InferenceResponse([
                again,
                pb_utils.Tensor("CHECKS", np.array([given.is_cpu(), again.is_cpu()])),
                pb_utils.Tensor("MESSAGES", np.array(messages, dtype=np.object_)),
                pb_utils.Tensor("WRITES", np.array(writes, dtype=np.object_)),
            ]))
        return responses
"""


def _answer(url: str) -> tuple[list[float], list[bool], list[str], list[str]]:
    client = httpclient.InferenceServerClient(url)
    given = httpclient.InferInput("IN", [3], "FP32")
    given.set_data_from_numpy(np.array([1.0, 2.0, 3.0], np.float32))
    result = client.infer("dl", [given])
    client.close()
    messages = [m.decode() for m in result.as_numpy("MESSAGES")]
    writes = [w.decode() for w in result.as_numpy("WRITES")]
    return (
        result.as_numpy("A").tolist(),
        result.as_numpy("CHECKS").tolist(),
        messages,
        writes,
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
    assert ours[:3] == expected[:3]
    # A read-only producer's memory is never written on either server, by
    # different means: Triton asks numpy for a legacy capsule, which cannot say
    # "read-only", so numpy refuses to make one; tritonx takes the versioned capsule
    # (no copy) and as_numpy() gives a read-only view. (Triton's from_dlpack over a
    # writable numpy array is not compared: its stub dies on numpy's capsule.)
    assert expected[3] == ["refused: BufferError"]
    assert ours[3] == ["write refused, producer intact"]
