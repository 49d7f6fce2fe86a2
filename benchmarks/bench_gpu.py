"""GPU benchmark: tritonx serving a compute-bound TorchScript MLP on cuda:0 against
torch's own batched loop, and the pinned staging copy against cudaMemcpyAsync.

1. Served throughput. In process, through the real ModelManager and pytorch
   backend: a KIND_GPU model (``--instances`` instances, each on its own stream
   from the core's StreamPool, two batches in flight on it by default) with
   dynamic batching, fed by 2*B C++ closed-loop clients per core worker (instance
   x PIPELINE_DEPTH; ``_native.generate_load``: no GIL, no network) sending
   batch-1 FP32 requests. The reference is torch itself at batch B doing the same
   work per batch: host input -> cuda (non_blocking, from pinned memory, which
   favours torch) -> module -> host output -> numpy. Target: served >= 95 % of
   torch's. Each row also prints where a served batch's time goes (Triton's
   compute input/infer/output per execution, and the rest: delivery and the
   scheduler) and the GPU utilisation NVML saw in both loops.
2. Staging bandwidth. Host->device copies of ``--copy-mib`` MiB: the path the
   backend's batches take (a numpy view of a tensor-arena buffer, copied with
   ``torch.from_numpy(view).to(cuda, non_blocking=True)`` on a StreamPool stream,
   one synchronisation per round) against plain ``cudaMemcpyAsync`` from
   ``cudaHostAlloc`` memory (C++). Target: >= 90 %. Pageable memory for contrast.

Every row runs in a process of its own (``--row``), so that a crash loses that row
only; a failed row prints its exit status and the end of its output.

    PYTHONPATH=python python benchmarks/bench_gpu.py [--seconds 3 --repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import served_rate
from _torch_mlp import Mlp

from tritonx import _native
from tritonx.repository import ManagerOptions, ModelManager

SERVE_TARGET = 0.95
COPY_TARGET = 0.90
DEFAULT_DEPTH = 2  # the pytorch backend's PIPELINE_DEPTH for GPU instances


@contextmanager
def gpu_busy(device: int = 0) -> Iterator[list[float]]:
    """NVML's utilisation of `device`, sampled every 100 ms while the block runs
    (the list stays empty without nvidia-ml-py)."""
    samples: list[float] = []
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device)
    except Exception:
        yield samples
        return
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            samples.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def utilisation(samples: list[float]) -> str:
    return f"{statistics.median(samples):.0f} %" if samples else "n/a"


def write_model(
    root: Path,
    dims: tuple[int, ...],
    args: argparse.Namespace,
    instances: int,
    depth: str = "",
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
        + (
            f'parameters {{ key: "PIPELINE_DEPTH" value {{ string_value: "{depth}" }} }}'
            if depth
            else ""
        )
    )
    return path


def torch_rate(
    path: Path, width: int, batch: int, seconds: float
) -> tuple[float, float, list[float]]:
    """Inferences/s of torch's own loop at batch B (pinned host input -> cuda ->
    module -> host output -> numpy), ms per batch, NVML utilisation samples."""
    module = torch.jit.load(str(path), map_location="cuda:0").eval()
    host = torch.rand(batch, width).pin_memory()
    count = 0
    with torch.inference_mode():
        warm_until = time.perf_counter() + 1.0
        while time.perf_counter() < warm_until:
            module(host.to("cuda:0", non_blocking=True)).cpu()
        with gpu_busy() as busy:
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                module(host.to("cuda:0", non_blocking=True)).cpu().numpy()
                count += batch
            elapsed = time.perf_counter() - start
    return count / elapsed, 1e3 * elapsed * batch / count, busy


def per_execution_ms(before: dict[str, Any], after: dict[str, Any]) -> list[float]:
    """Mean compute input / infer / output per execution between two snapshots."""
    totals = [0, 0, 0, 0]
    for size, now in after["batch_stats"].items():
        was = before["batch_stats"].get(size, (0, 0, 0, 0))
        for i in range(4):
            totals[i] += now[i] - was[i]
    count = max(1, totals[0])
    return [totals[i] / count / 1e6 for i in (1, 2, 3)]


async def served(
    root: Path,
    path: Path,
    args: argparse.Namespace,
    workers: int,
    per_batch: int,
    label: str,
    instances: int,
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
        clients = per_batch * args.batch * workers
        ratios, rates, offline, batches, notes = [], [], [], [], []
        for _ in range(args.repeats):
            off, off_ms, off_busy = torch_rate(path, width, args.batch, args.seconds)
            before = model.statistics()
            with gpu_busy() as busy:
                rate, mean_batch = served_rate(
                    model, inputs, clients, args.seconds, 1.0
                )
            after = model.statistics()
            execs = after["execution_count"] - before["execution_count"]
            # The execution count includes the warm-up window of served_rate:
            # estimate the wall time per batch from the measured rate instead.
            period = 1e3 * mean_batch / rate if rate else 0.0
            inp, infer, out = per_execution_ms(before, after)
            queued = after["queue"][1] - before["queue"][1]
            queue_ms = queued / max(1, after["queue"][0] - before["queue"][0]) / 1e6
            notes.append(
                f"  torch loop {off_ms:.3f} ms/batch, GPU busy {utilisation(off_busy)}"
                f"; served {period:.3f} ms/batch ({execs} executions, each: "
                f"compute input {inp:.3f} + infer "
                f"{infer:.3f} + output {out:.3f} ms), queue {queue_ms:.3f} ms/request, "
                f"GPU busy {utilisation(busy)}"
            )
            ratios.append(rate / off)
            rates.append(rate)
            offline.append(off)
            batches.append(mean_batch)
        ratio = statistics.median(ratios)
        dims = "-".join(map(str, args.dims))
        return [
            f"| served MLP {dims} FP32 on cuda:0, B{args.batch}, {instances} "
            f"GPU instance(s){label}, {clients} C++ clients (mean batch "
            f"{statistics.median(batches):.1f}) | torch batched "
            f"{statistics.median(offline):,.0f} inf/s | {statistics.median(rates):,.0f}"
            f" inf/s | {ratio:.1%} | >= {SERVE_TARGET:.0%} | "
            f"{'PASS' if ratio >= SERVE_TARGET else 'FAIL'} |",
            *notes,
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


def run_row(row: str, args: argparse.Namespace) -> int:
    """One row, in this process: "copy" or "served:<instances>:<clients per
    batch slot>[:<PIPELINE_DEPTH>]"."""
    if row == "copy":
        print("\n".join(copy_rows(args)), flush=True)
        return 0
    _, instances, per_batch, *depth = row.split(":")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = write_model(root, tuple(args.dims), args, int(instances), *depth)
        label = f" PIPELINE_DEPTH {depth[0]}" if depth else ""
        # Clients per core worker (a GPU instance has PIPELINE_DEPTH of them, 2 by
        # default): each worker then has a full batch waiting while it runs one.
        workers = int(instances) * int(depth[0] if depth else DEFAULT_DEPTH)
        lines = asyncio.run(
            served(root, path, args, workers, int(per_batch), label, int(instances))
        )
        print("\n".join(lines), flush=True)
    return 0


def row_in_subprocess(row: str, argv: list[str], timeout: float) -> list[str]:
    """A row's output lines from a child process; a crash or a timeout becomes a
    FAILED line with the exit status and the child's last lines."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--row", row]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:]
        text = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return [f"| {row}: FAILED (timed out after {timeout:.0f} s) |", text]
    lines = [line for line in done.stdout.splitlines() if line.startswith(("|", " "))]
    if done.returncode != 0:
        how = (
            f"signal {-done.returncode}"
            if done.returncode < 0
            else f"exit {done.returncode}"
        )
        tail = (done.stdout + done.stderr).splitlines()[-25:]
        lines += [f"| {row}: FAILED ({how}) |", *("    " + t for t in tail)]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2048, 8192, 8192, 2048])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--clients-per-batch",
        type=int,
        default=2,
        help="closed-loop clients per core worker (instances x PIPELINE_DEPTH), "
        "in multiples of --batch",
    )
    parser.add_argument(
        "--extra-rows",
        nargs="*",
        default=[],
        help="more served rows as <instances>:<clients per batch>[:<depth>]",
    )
    parser.add_argument("--delay-us", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copy-mib", type=int, default=256)
    parser.add_argument("--copy-iters", type=int, default=20)
    parser.add_argument("--row-timeout", type=float, default=120.0)
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (_native.probe_cuda() and torch.cuda.is_available()):
        print("bench_gpu: no usable CUDA device; nothing to measure")
        return 0
    if args.row:
        return run_row(args.row, args)
    argv = sys.argv[1:]
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    rows = [
        "| what | reference | tritonx | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    failed = False
    served_rows = [f"served:{n}:{args.clients_per_batch}" for n in args.instances]
    served_rows += [f"served:{spec}" for spec in args.extra_rows]
    for row in ["copy", *served_rows]:
        lines = row_in_subprocess(row, argv, args.row_timeout)
        failed |= any("FAILED" in line for line in lines)
        print("\n".join(lines), flush=True)
        rows += [
            line for line in lines if line.startswith("| ") and "FAILED" not in line
        ]
    print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
