"""GPU instances across unload and reload, in process (what bench_gpu does between
its rows): responses of a KIND_GPU torch model stay readable after the model
unloaded, a new GPU model loads and serves meanwhile, and dropping the old
responses afterwards is harmless. Their host bytes live in the server's arena, and
the instance streams are recycled rather than destroyed, so nothing a framework
recorded against them dangles (torch's pinned allocator used to record an event
on the unloaded instance's destroyed stream here: a segfault)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmodels import Mlp, script

from tritonx import _native
from tritonx.repository import ManagerOptions, ModelManager

pytestmark = pytest.mark.gpu

CONFIG = """
backend: "pytorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 16 ] } ]
instance_group [ { kind: KIND_GPU count: 2 gpus: [ 0 ] } ]
dynamic_batching { max_queue_delay_microseconds: 1000 }
"""


def _infer(model: object, x: np.ndarray, rid: str) -> object:
    request = _native.Request(rid, [("INPUT__0", "FP32", list(x.shape), x)])
    return model.infer(request)  # type: ignore[attr-defined]


async def _serve_twice(repo: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    def manager() -> ModelManager:
        return ModelManager(
            ManagerOptions(repositories=[repo], gpu_ids=_native.cuda_device_ids()),
            _native.ModelRegistry(),
        )

    first = manager()
    await first.start()
    held = [
        _infer(first.registry.find("mlp"), x, f"a{i}") for i, x in enumerate(inputs)
    ]
    await first.shutdown()  # unloaded: its instances and stream pools are gone
    del first
    second = manager()
    await second.start()
    try:
        model = second.registry.find("mlp")
        got = [r.outputs[0].as_numpy().copy() for r in held]  # type: ignore[attr-defined]
        del held
        gc.collect()
        _native.release_pending_refs()  # what C++ threads dropped goes now
        got += [
            _infer(model, x, f"b{i}").outputs[0].as_numpy().copy()  # type: ignore[attr-defined]
            for i, x in enumerate(inputs)
        ]
    finally:
        await second.shutdown()
    torch.cuda.synchronize()
    return got


def test_responses_outlive_their_unloaded_gpu_model(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    module = Mlp(width=16, hidden=64)
    script(repo, "mlp", module, CONFIG)
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((1 + i % 3, 16), dtype=np.float32) for i in range(6)]
    with torch.no_grad():
        expected = [module(torch.from_numpy(x)).numpy() for x in inputs]
    got = asyncio.run(_serve_twice(repo, inputs))
    for value, want in zip(got, expected + expected, strict=True):
        np.testing.assert_allclose(value, want, rtol=1e-4, atol=1e-4)
