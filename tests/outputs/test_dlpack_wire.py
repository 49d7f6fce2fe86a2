"""Python models answering with DLPack tensors, through the wire (real server,
tritonclient HTTP and gRPC): torch tensors and capsules through
pb_utils.Tensor.from_dlpack, bfloat16, a non-contiguous numpy view of a torch
tensor given to the constructor (copied once), a producer that must outlive the
response, a read-only producer whose view refuses the model's writes, in the server
process and in a stub process, and a BLS caller passing a callee's output on via
DLPack. None of the DLPack ones goes through numpy on the way to the core."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, run_server

pytest.importorskip("torch")

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "IN", data_type: TYPE_FP32, dims: [ 3 ] }} ]
output [
  {{ name: "A", data_type: TYPE_FP32, dims: [ 3 ] }},
  {{ name: "B", data_type: TYPE_FP32, dims: [ 3 ] }},
  {{ name: "C", data_type: TYPE_FP32, dims: [ 3 ] }},
  {{ name: "D", data_type: TYPE_FP32, dims: [ 3 ] }},
  {{ name: "H", data_type: TYPE_BF16, dims: [ 3 ] }},
  {{ name: "P", data_type: TYPE_FP32, dims: [ 3 ] }},
  {{ name: "CHECKS", data_type: TYPE_BOOL, dims: [ 5 ] }}
]
{extra}
"""
MODEL = """
import weakref

import numpy as np
import torch
from torch.utils.dlpack import to_dlpack
import triton_python_backend_utils as pb_utils


class Producer:
    # A DLPack producer that poisons its buffer when it is freed: a response read
    # after the core let go of its producer would show -1s.
    def __init__(self, array):
        self.array = array
        weakref.finalize(self, array.fill, -1.0)

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def read_only_kept():
    # A view of a read-only producer refuses writes; the producer stays as it was.
    ro = np.arange(3, dtype=np.float32)
    ro.flags.writeable = False
    view = pb_utils.Tensor.from_dlpack("R", ro).as_numpy()
    try:
        view[0] = 42
    except ValueError:
        return bool(ro[0] == 0 and np.shares_memory(view, ro))
    return False


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            inp = pb_utils.get_input_tensor_by_name(r, "IN")
            x = torch.from_dlpack(inp.to_dlpack())  # the request's bytes, no copy
            a = pb_utils.Tensor.from_dlpack("A", x * 2)
            bt = x + 1
            b = pb_utils.Tensor.from_dlpack("B", bt)
            c = pb_utils.Tensor.from_dlpack("C", to_dlpack(x * 3))
            d = pb_utils.Tensor("D", (x * 5).t().contiguous().t().numpy())  # strided
            h = pb_utils.Tensor.from_dlpack("H", (x * 6).to(torch.bfloat16))
            p = pb_utils.Tensor.from_dlpack("P", Producer(x.numpy() * 4))
            checks = np.array(
                [
                    a.is_cpu() and b.is_cpu() and h.triton_dtype() == 14,
                    b.as_numpy().ctypes.data == bt.data_ptr(),  # no copy in
                    torch.from_dlpack(b.to_dlpack()).data_ptr() == bt.data_ptr(),
                    torch.from_dlpack(c).data_ptr() == c.as_numpy().ctypes.data,
                    read_only_kept(),
                ],
                dtype=bool,
            )
            checks = pb_utils.Tensor("CHECKS", np.tile(checks, (x.shape[0], 1)))
            out.append(pb_utils.InferenceResponse([a, b, c, d, h, p, checks]))
        return out
"""
BLS_CONFIG = """
name: "bls_dl"
backend: "python"
max_batch_size: 8
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 3 ] } ]
output [ { name: "A", data_type: TYPE_FP32, dims: [ 3 ] },
         { name: "ON_CPU", data_type: TYPE_BOOL, dims: [ 1 ] } ]
"""
BLS_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            inp = pb_utils.get_input_tensor_by_name(r, "IN")
            answer = pb_utils.InferenceRequest(
                model_name="dl", requested_output_names=["A"], inputs=[inp]
            ).exec()
            if answer.has_error():
                raise pb_utils.TritonModelException(answer.error().message())
            a = pb_utils.get_output_tensor_by_name(answer, "A")
            passed = pb_utils.Tensor.from_dlpack("A", a.to_dlpack())
            on_cpu = np.full((inp.shape()[0], 1), a.is_cpu() and passed.is_cpu())
            out.append(pb_utils.InferenceResponse(
                [passed, pb_utils.Tensor("ON_CPU", on_cpu)]))
        return out
"""
PROCESS = 'parameters { key: "EXECUTION_MODE" value: { string_value: "process" } }'


def _write(repo: Path, name: str, config: str, model: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(textwrap.dedent(config))
    (repo / name / "1" / "model.py").write_text(textwrap.dedent(model))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("dlpack") / "repo"
    _write(repo, "dl", CONFIG.format(name="dl", extra=""), MODEL)
    _write(repo, "dl_stub", CONFIG.format(name="dl_stub", extra=PROCESS), MODEL)
    _write(repo, "bls_dl", BLS_CONFIG, BLS_MODEL)
    with run_server(repo, timeout=120.0) as running:
        yield running


X = np.array([[1, 2, 3], [-4, 5.5, 6]], np.float32)


def _check(result: object, x: np.ndarray) -> None:
    got = {n: result.as_numpy(n) for n in ("A", "B", "C", "D", "P")}  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got["A"], x * 2)
    np.testing.assert_array_equal(got["B"], x + 1)
    np.testing.assert_array_equal(got["C"], x * 3)
    np.testing.assert_array_equal(got["D"], x * 5)
    np.testing.assert_array_equal(got["P"], x * 4)  # not -1: the producer lived on
    h = np.asarray(result.as_numpy("H"), np.float32)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(h, x * 6)  # exact in bfloat16
    assert result.as_numpy("CHECKS").all()  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", ["dl", "dl_stub"])
def test_dlpack_outputs_over_http(server: RunningServer, model: str) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    for x in (X, X[:1] * 3):
        inp = httpclient.InferInput("IN", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=False)
        _check(client.infer(model, [inp]), x)
    client.close()


@pytest.mark.parametrize("model", ["dl", "dl_stub"])
def test_dlpack_outputs_over_grpc(server: RunningServer, model: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inp = grpcclient.InferInput("IN", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    _check(client.infer(model, [inp]), X)
    client.close()


def test_bls_output_passed_on_through_dlpack(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    inp = httpclient.InferInput("IN", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    result = client.infer("bls_dl", [inp])
    client.close()
    np.testing.assert_array_equal(result.as_numpy("A"), X * 2)
    assert result.as_numpy("ON_CPU").all()
