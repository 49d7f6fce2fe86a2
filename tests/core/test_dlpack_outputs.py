"""Outputs may be any DLPack tensor, not only numpy arrays: torch tensors (CPU and,
where a GPU is usable, CUDA, copied to the host once by the core), bfloat16 ones
as BF16; gathered batches live in the (pinned) arena."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from coreutil import ModelFactory, batching, request, rows, spec

from tritonx import _native

torch = pytest.importorskip("torch")


class TorchOut:
    """Gathered instance returning OUTPUT0 = INPUT0 * 2 as a torch tensor on
    ``device`` (in ``dtype``), through the DLPack protocol alone."""

    gather_inputs = True

    def __init__(self, device: str, dtype: Any = None) -> None:
        self.device = device
        self.dtype = dtype

    def execute_batch(self, inputs: dict[str, np.ndarray], requests: list[Any]) -> Any:
        x = inputs["INPUT0"]
        t = torch.from_numpy(x).to(self.device) * 2
        if self.dtype is not None:
            t = t.to(self.dtype)
        return {"OUTPUT0": t}


def _run(make_model: ModelFactory, instance: TorchOut, model_spec: Any) -> list[Any]:
    model = make_model(model_spec, batching(delay_us=0), [instance])
    return [
        model.infer(request(f"r{i}", rows(1 + i, float(i)))).outputs[0]
        for i in range(3)
    ]


def test_torch_cpu_tensor_outputs(make_model: ModelFactory) -> None:
    outputs = _run(make_model, TorchOut("cpu"), spec())
    for i, out in enumerate(outputs):
        assert out.datatype == "FP32"
        np.testing.assert_array_equal(out.as_numpy(), rows(1 + i, float(i)) * 2)


def test_torch_bf16_outputs_become_bf16(make_model: ModelFactory) -> None:
    model_spec = _native.ModelSpec(
        "m",
        1,
        8,
        [_native.TensorSpec("INPUT0", "FP32", [4])],
        [_native.TensorSpec("OUTPUT0", "BF16", [4])],
    )
    outputs = _run(make_model, TorchOut("cpu", torch.bfloat16), model_spec)
    for i, out in enumerate(outputs):
        assert out.datatype == "BF16"
        want = torch.from_numpy(rows(1 + i, float(i)) * 2).to(torch.bfloat16)
        got = torch.from_numpy(out.as_numpy().view(np.int16)).view(torch.bfloat16)
        assert torch.equal(got, want)


@pytest.mark.gpu
@pytest.mark.skipif(
    not (_native.probe_cuda() and torch.cuda.is_available()), reason="no usable GPU"
)
def test_cuda_tensor_outputs_are_copied_to_host(make_model: ModelFactory) -> None:
    outputs = _run(make_model, TorchOut("cuda:0"), spec())
    for i, out in enumerate(outputs):
        np.testing.assert_array_equal(out.as_numpy(), rows(1 + i, float(i)) * 2)


@pytest.mark.gpu
@pytest.mark.skipif(not _native.probe_cuda(), reason="no usable GPU")
def test_gathered_batches_live_in_pinned_memory() -> None:
    """The arena batches are gathered into is page-locked (async H2D copies);
    --pinned-memory-pool-byte-size=0 (a context with a 0-byte pool) is not."""

    def pinned(array: np.ndarray) -> bool:
        return _native.cuda_is_pinned(array.__array_interface__["data"][0])

    assert pinned(_native.arena_array(1 << 20))
    assert pinned(_native.arena_array(4096, _native.ServerContext(64 << 20)))
    assert not pinned(_native.arena_array(4096, _native.ServerContext(0)))
    assert _native.ServerContext(0).arena_stats()["pinned"] is False
