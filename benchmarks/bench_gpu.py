"""GPU benchmark: tritonx serving a compute-bound TorchScript MLP on cuda:0 against
torch's own batched loop, and the pinned staging copy against cudaMemcpyAsync.

1. Served throughput. In process, through the real ModelManager and pytorch
   backend: a KIND_GPU model (``--instances`` instances, each on its own stream
   from the core's StreamPool) with dynamic batching, fed by 2*B C++ closed-loop
   clients (``_native.generate_load``: no GIL, no network) sending batch-1 FP32
   requests. The reference is torch itself at batch B doing the same work per
   batch: host input -> cuda (non_blocking, from pinned memory) -> module -> host
   output. Target: served >= 95 % of torch's.
2. Staging bandwidth. Host->device copies of ``--copy-mib`` MiB: the path the
   backend's batches take (a numpy view of a tensor-arena buffer, copied with
   ``torch.from_numpy(view).to(cuda, non_blocking=True)`` on a StreamPool stream,
   one synchronisation per round) against plain ``cudaMemcpyAsync`` from
   ``cudaHostAlloc`` memory (C++). Target: >= 90 %. Pageable memory for contrast.

    PYTHONPATH=python python benchmarks/bench_gpu.py [--seconds 3 --repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import served_rate
from _torch_mlp import Mlp

from tritonx import _native
from tritonx.repository import ManagerOptions, ModelManager

SERVE_TARGET = 0.95
COPY_TARGET = 0.90


def write_model(
    root: Path, dims: tuple[int, ...], args: argparse.Namespace, instances: int
) -> Path:
    (root / "mlp" / "1").mkdir(parents=True)
    path = root / "mlp" / "1" / "model.pt"
    torch.jit.script(Mlp(dims).eval()).save(str(path))
    (root / "mlp" / "config.pbtxt").write_text(
        f'backend: "pytorch"\nmax_batch_size: {args.batch}\n'
        f'input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ {dims[0]} ] }} ]\n'
        f'output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ {dims[-1]} ] }} ]\n'
        f"instance_group [ {{ count: {instances} kind: KIND_GPU gpus: [ 0 ] }} ]\n"
        f"dynamic_batching {{ preferred_batch_size: [ {args.batch} ] "
        f"max_queue_delay_microseconds: {args.delay_us} }}\n"
    )
    return path


def torch_rate(path: Path, width: int, batch: int, seconds: float) -> float:
    """Inferences/s of torch's own loop at batch B: pinned host input -> cuda ->
    module -> host output, the work one served batch does."""
    module = torch.jit.load(str(path), map_location="cuda:0").eval()
    host = torch.rand(batch, width).pin_memory()
    count = 0
    with torch.inference_mode():
        warm_until = time.perf_counter() + 1.0
        while time.perf_counter() < warm_until:
            module(host.to("cuda:0", non_blocking=True)).cpu()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            module(host.to("cuda:0", non_blocking=True)).cpu().numpy()
            count += batch
        elapsed = time.perf_counter() - start
    return count / elapsed


async def served(
    root: Path, path: Path, args: argparse.Namespace, instances: int
) -> list[str]:
    manager = ModelManager(
        ManagerOptions(repositories=[root], gpu_ids=_native.cuda_device_ids()),
        _native.ModelRegistry(),
    )
    await manager.start()
    try:
        model = manager.registry.find("mlp")
        width = args.dims[0]
        x = np.random.default_rng(1).random((1, width), np.float32)
        inputs = [("INPUT__0", "FP32", [1, width], x)]
        clients = 2 * args.batch * instances
        ratios, rates, offline, batches = [], [], [], []
        for _ in range(args.repeats):
            off = torch_rate(path, width, args.batch, args.seconds)
            rate, mean_batch = served_rate(model, inputs, clients, args.seconds, 1.0)
            ratios.append(rate / off)
            rates.append(rate)
            offline.append(off)
            batches.append(mean_batch)
        ratio = statistics.median(ratios)
        dims = "-".join(map(str, args.dims))
        return [
            f"| served MLP {dims} FP32 on cuda:0, B{args.batch}, {instances} "
            f"GPU instance(s), {clients} C++ clients (mean batch "
            f"{statistics.median(batches):.1f}) | torch batched "
            f"{statistics.median(offline):,.0f} inf/s | {statistics.median(rates):,.0f}"
            f" inf/s | {ratio:.1%} | >= {SERVE_TARGET:.0%} | "
            f"{'PASS' if ratio >= SERVE_TARGET else 'FAIL'} |"
        ]
    finally:
        await manager.shutdown()


def staging_gbps(nbytes: int, iterations: int) -> float:
    """The backend's staging path: arena view -> torch -> cuda on a pool stream."""
    pool = _native.StreamPool(1, 0)
    stream = torch.cuda.ExternalStream(pool.get(0), device="cuda:0")
    view = _native.arena_array(nbytes)
    view[:] = 1
    assert _native.cuda_is_pinned(view.__array_interface__["data"][0])
    src = torch.from_numpy(view)
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda:0")
    with torch.cuda.stream(stream):
        dst.copy_(src, non_blocking=True)
        stream.synchronize()
        start = time.perf_counter()
        for _ in range(iterations):
            dst.copy_(src, non_blocking=True)
        stream.synchronize()
        elapsed = time.perf_counter() - start
    return nbytes * iterations / elapsed / 1e9


def copy_rows(args: argparse.Namespace) -> list[str]:
    nbytes = args.copy_mib << 20
    iters = args.copy_iters

    def plain(source: str) -> float:
        return nbytes * iters / _native.h2d_copy_seconds(source, nbytes, iters, 0) / 1e9

    base, staged, pageable = [], [], []
    for _ in range(args.repeats):
        base.append(plain("cuda_host_alloc"))
        staged.append(staging_gbps(nbytes, iters))
        pageable.append(plain("pageable"))
    b, s, p = (statistics.median(v) for v in (base, staged, pageable))
    ratio = s / b
    return [
        f"| H2D staging {args.copy_mib} MiB: arena view -> torch .to(cuda) on a "
        f"StreamPool stream | cudaMemcpyAsync from cudaHostAlloc {b:.1f} GB/s | "
        f"{s:.1f} GB/s | {ratio:.1%} | >= {COPY_TARGET:.0%} | "
        f"{'PASS' if ratio >= COPY_TARGET else 'FAIL'} |",
        f"| (contrast) cudaMemcpyAsync from pageable malloc | {b:.1f} GB/s | "
        f"{p:.1f} GB/s | {p / b:.1%} | - | - |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2048, 8192, 8192, 2048])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--instances", type=int, nargs="+", default=[2])
    parser.add_argument("--delay-us", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copy-mib", type=int, default=256)
    parser.add_argument("--copy-iters", type=int, default=20)
    args = parser.parse_args()
    if not (_native.probe_cuda() and torch.cuda.is_available()):
        print("bench_gpu: no usable CUDA device; nothing to measure")
        return 0
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    rows = [
        "| what | reference | tritonx | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    rows += copy_rows(args)
    print("\n".join(rows[2:]), flush=True)
    for instances in args.instances:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            path = write_model(root, tuple(args.dims), args, instances)
            rows += asyncio.run(served(root, path, args, instances))
        print(rows[-1], flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
