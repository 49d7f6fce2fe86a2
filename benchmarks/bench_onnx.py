"""ONNX Runtime backend benchmark: tritonx's ONNX path against bare onnxruntime.

Everything runs in one process on the same machine, models built with onnx.helper
and loaded through the real ModelManager from a temporary repository:

1. Per-request overhead at batch 1. (a) a bare ``session.run`` loop with the
   SessionOptions the backend built for the model against ``Model.infer(Request)`` in
   a loop (one submitter); (b) bare ``session.run`` from asyncio the way an asyncio
   program calls a blocking framework (``loop.run_in_executor``, one worker thread)
   against ``Model.submit`` + ``await`` (one in flight): both pay a hop to a worker
   thread and back to the loop, which no asyncio caller avoids. Overhead =
   median(tritonx) - median(bare) per request; target <= 50 us.
2. Batched throughput of a compute-bound MLP (512-2048-2048-512 FP32) through the
   dynamic batcher (preferred batch B, small max queue delay, batch-1 requests from
   many concurrent submitters) against offline ``session.run`` on [B, 512];
   target >= 90 % of offline inferences/s. Also reports the mean batch formed
   (inference_count / execution_count over the measured window).

Both paths use the same intra-op thread count (--threads, default 2, inter-op 1).

    PYTHONPATH=python python benchmarks/bench_onnx.py
    PYTHONPATH=python python benchmarks/bench_onnx.py --repeats 7 --batch 32
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from tritonx import _native
from tritonx.repository import ManagerOptions, ModelManager

OVERHEAD_TARGET_US = 50.0
RATIO_TARGET = 0.90
MLP_DIMS = (512, 2048, 2048, 512)
SMALL_MLP_DIMS = (16, 64, 64, 16)
OPSET = 17


# -- models -----------------------------------------------------------------------


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    # IR 8 keeps the file loadable by older onnxruntime builds too.
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def build_add_sub(path: Path, width: int = 16) -> None:
    """INPUT0, INPUT1 [-1, width] -> OUTPUT0 = sum, OUTPUT1 = difference."""
    shape: list[int | str] = ["batch", width]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
        for n in ("INPUT0", "INPUT1")
    ]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
        for n in ("OUTPUT0", "OUTPUT1")
    ]
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    _save(helper.make_graph(nodes, "add_sub", inputs, outputs), path)


def build_mlp(path: Path, dims: Sequence[int], seed: int = 0) -> None:
    """INPUT0 [-1, dims[0]] -> Gemm+Relu per layer -> OUTPUT0 [-1, dims[-1]]."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    current = "INPUT0"
    layers = len(dims) - 1
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(
            np.float32
        )
        b = np.zeros(fan_out, dtype=np.float32)
        weights += [
            numpy_helper.from_array(w, f"W{i}"),
            numpy_helper.from_array(b, f"B{i}"),
        ]
        gemm_out = "OUTPUT0" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [gemm_out]))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"r{i}"]))
            current = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [
            helper.make_tensor_value_info(
                "INPUT0", TensorProto.FLOAT, ["batch", dims[0]]
            )
        ],
        [
            helper.make_tensor_value_info(
                "OUTPUT0", TensorProto.FLOAT, ["batch", dims[-1]]
            )
        ],
        initializer=weights,
    )
    _save(graph, path)


@dataclass(frozen=True)
class ModelDef:
    name: str
    inputs: dict[str, int]  # name -> width (FP32 [width] per sample)
    outputs: dict[str, int]
    max_batch_size: int
    dynamic: str = ""  # dynamic_batching block, "" = default scheduler


def config_pbtxt(m: ModelDef, threads: int, extra: dict[str, str]) -> str:
    def tensors(kind: str, specs: dict[str, int]) -> str:
        body = ",\n".join(
            f'  {{ name: "{n}" data_type: TYPE_FP32 dims: [ {w} ] }}'
            for n, w in specs.items()
        )
        return f"{kind} [\n{body}\n]\n"

    # Thread counts in the config so the bare session can copy them exactly.
    return (
        f'name: "{m.name}"\nbackend: "onnxruntime"\n'
        f"max_batch_size: {m.max_batch_size}\n"
        + tensors("input", m.inputs)
        + tensors("output", m.outputs)
        + "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
        + m.dynamic
        + 'parameters { key: "intra_op_thread_count" '
        f'value: {{ string_value: "{threads}" }} }}\n'
        + 'parameters { key: "inter_op_thread_count" value: { string_value: "1" } }\n'
        + "".join(
            f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n'
            for k, v in extra.items()
        )
    )


def write_repository(
    root: Path, batch: int, delay_us: int, threads: int, extra: dict[str, str]
) -> None:
    defs = [
        ModelDef(
            "add_sub", {"INPUT0": 16, "INPUT1": 16}, {"OUTPUT0": 16, "OUTPUT1": 16}, 8
        ),
        ModelDef("mlp_small", {"INPUT0": 16}, {"OUTPUT0": 16}, 8),
        ModelDef(
            "mlp_big",
            {"INPUT0": MLP_DIMS[0]},
            {"OUTPUT0": MLP_DIMS[-1]},
            batch,
            "dynamic_batching { "
            f"preferred_batch_size: [ {batch} ] "
            f"max_queue_delay_microseconds: {delay_us} }}\n",
        ),
    ]
    build_add_sub(root / "add_sub" / "1" / "model.onnx")
    build_mlp(root / "mlp_small" / "1" / "model.onnx", SMALL_MLP_DIMS)
    build_mlp(root / "mlp_big" / "1" / "model.onnx", MLP_DIMS)
    for m in defs:
        (root / m.name / "config.pbtxt").write_text(config_pbtxt(m, threads, extra))


# -- helpers ----------------------------------------------------------------------


def bare_session(manager: ModelManager, name: str) -> ort.InferenceSession:
    """A session built from the very SessionOptions the backend used for `name`."""
    loaded = manager.get(name)
    settings = loaded.backend_model.settings
    return ort.InferenceSession(
        str(loaded.backend_model.path),
        sess_options=settings.options,
        providers=["CPUExecutionProvider"],
    )


def sample_inputs(widths: dict[str, int], rows: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        n: rng.standard_normal((rows, w)).astype(np.float32) for n, w in widths.items()
    }


def make_request(feed: dict[str, np.ndarray]) -> _native.Request:
    return _native.Request("", [(n, "FP32", list(a.shape), a) for n, a in feed.items()])


def per_call_us(fn: Callable[[], Any], iters: int) -> float:
    """Median per-call latency of `fn` over `iters` calls, in us."""
    samples = np.empty(iters, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(iters):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    return float(np.median(samples)) / 1e3


async def async_per_call_us(call: Callable[[], Awaitable[Any]], iters: int) -> float:
    """Median latency of `await call()` over `iters` calls, in us."""
    samples = np.empty(iters, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(iters):
        t0 = clock()
        await call()
        samples[i] = clock() - t0
    return float(np.median(samples)) / 1e3


def submit_call(
    model: _native.Model, feed: dict[str, np.ndarray]
) -> Callable[[], Awaitable[None]]:
    """One request through Model.submit, awaited on the running loop."""

    async def call() -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_native.Response] = loop.create_future()
        model.submit(make_request(feed), _native.settle(future), loop)
        (await future).outputs[0].as_numpy()

    return call


# -- scenario 1: per-request overhead -----------------------------------------------


@dataclass
class Row:
    scenario: str
    baseline: str
    tritonx: str
    delta: str
    target: str
    ok: bool
    note: str = ""


async def overhead_rows(
    manager: ModelManager, name: str, widths: dict[str, int], iters: int, repeats: int
) -> list[Row]:
    session = bare_session(manager, name)
    model = manager.registry.find(name)
    feed = sample_inputs(widths)

    def bare() -> None:
        session.run(None, feed)

    def infer() -> None:
        model.infer(make_request(feed)).outputs[0].as_numpy()

    runs: dict[str, list[float]] = {
        "bare": [],
        "infer": [],
        "bare executor": [],
        "asyncio submit": [],
    }
    loop = asyncio.get_running_loop()
    submit = submit_call(model, feed)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:

        def bare_executor() -> Awaitable[None]:
            return loop.run_in_executor(executor, bare)

        # Interleave the four so drift (thermal, other load) hits them alike.
        for _ in range(repeats + 1):
            runs["bare"].append(per_call_us(bare, iters))
            runs["infer"].append(per_call_us(infer, iters))
            runs["bare executor"].append(await async_per_call_us(bare_executor, iters))
            runs["asyncio submit"].append(await async_per_call_us(submit, iters))
    # The first round is warm-up.
    medians = {key: statistics.median(values[1:]) for key, values in runs.items()}
    rows = []
    for label, baseline in (("infer", "bare"), ("asyncio submit", "bare executor")):
        b, t = medians[baseline], medians[label]
        rows.append(
            Row(
                f"{name} b1, {label} vs {baseline}",
                f"{b:.1f} us",
                f"{t:.1f} us",
                f"{t - b:+.1f} us",
                f"<= {OVERHEAD_TARGET_US:.0f} us",
                t - b <= OVERHEAD_TARGET_US,
                f"repeat medians: {baseline} {_span(runs[baseline][1:])}, "
                f"tritonx {_span(runs[label][1:])} us",
            )
        )
    return rows


def _span(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}"


# -- scenario 2: batched throughput -----------------------------------------------


def offline_rate(session: ort.InferenceSession, batch: int, seconds: float) -> float:
    feed = sample_inputs({"INPUT0": MLP_DIMS[0]}, batch)
    session.run(None, feed)
    runs = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        session.run(None, feed)
        runs += 1
    return runs * batch / elapsed


@dataclass
class Window:
    rate: float  # inferences/s
    mean_batch: float  # inference_count / execution_count
    # Per execution, from the core's statistics: input = gather + GIL + backend's
    # input wrapping, infer = the backend call (ORT's run), output = slicing back.
    input_ms: float
    infer_ms: float
    output_ms: float

    @property
    def period_ms(self) -> float:
        """Wall time per execution; minus the three stages = the worker's idle gap."""
        return self.mean_batch / self.rate * 1e3


_STAGES = ("compute_input", "compute_infer", "compute_output")


def _counts(model: _native.Model) -> tuple[int, ...]:
    stats = model.statistics()
    # Stage times are accounted per request (each with its batch's time).
    return (
        stats["inference_count"],
        stats["execution_count"],
        *(stats[stage][1] for stage in _STAGES),
    )


def _window(before: tuple[int, ...], after: tuple[int, ...], elapsed: float) -> Window:
    inferences = max(after[0] - before[0], 1)
    executions = max(after[1] - before[1], 1)
    stage_ms = [
        (a - b) / inferences / 1e6 for a, b in zip(after[2:], before[2:], strict=True)
    ]
    return Window(inferences / elapsed, inferences / executions, *stage_ms)


def threaded_rate(model: _native.Model, submitters: int, seconds: float) -> Window:
    """`submitters` threads, each a blocking Model.infer loop of batch-1 requests."""
    feed = sample_inputs({"INPUT0": MLP_DIMS[0]})
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            model.infer(make_request(feed))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(submitters)]
    for t in threads:
        t.start()
    time.sleep(min(0.5, seconds / 4))  # warm-up: queues filled, batches formed
    before = _counts(model)
    start = time.perf_counter()
    time.sleep(seconds)
    after = _counts(model)
    elapsed = time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join()
    return _window(before, after, elapsed)


def native_rate(model: _native.Model, in_flight: int, seconds: float) -> Window:
    """`in_flight` closed-loop clients on C++ threads (no GIL), like the requests the
    C++ gRPC frontend feeds the scheduler: the row that measures the server side."""
    x = sample_inputs({"INPUT0": MLP_DIMS[0]})["INPUT0"]
    inputs = [("INPUT0", "FP32", list(x.shape), x)]
    _native.generate_load(model, inputs, in_flight, min(0.5, seconds / 4))  # warm-up
    before = _counts(model)
    result = _native.generate_load(model, inputs, in_flight, seconds)
    after = _counts(model)
    return _window(before, after, float(result["seconds"]))


async def async_rate(model: _native.Model, in_flight: int, seconds: float) -> Window:
    """`in_flight` asyncio clients, each submit + await batch-1 requests."""
    feed = sample_inputs({"INPUT0": MLP_DIMS[0]})
    loop = asyncio.get_running_loop()
    stop = False

    async def client() -> None:
        while not stop:
            future: asyncio.Future[_native.Response] = loop.create_future()
            model.submit(make_request(feed), _native.settle(future), future.get_loop())
            await future

    tasks = [asyncio.create_task(client()) for _ in range(in_flight)]
    await asyncio.sleep(min(0.5, seconds / 4))
    before = _counts(model)
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    after = _counts(model)
    elapsed = time.perf_counter() - start
    stop = True
    await asyncio.gather(*tasks)
    return _window(before, after, elapsed)


def _median_by_rate(windows: list[Window]) -> Window:
    """The window with the median rate (its stage times belong together)."""
    return sorted(windows, key=lambda w: w.rate)[len(windows) // 2]


def _throughput_row(
    label: str, batch: int, offline: list[float], windows: list[Window]
) -> Row:
    # Each repeat ran offline and tritonx back to back: the ratio of a pair is less
    # exposed to drift (other load on the machine) than a ratio of medians.
    ratio = statistics.median(w.rate / o for w, o in zip(windows, offline, strict=True))
    mean_batch = statistics.median(w.mean_batch for w in windows)
    med = _median_by_rate(windows)
    return Row(
        f"mlp_big B{batch}, {label}",
        f"{statistics.median(offline):,.0f} inf/s",
        f"{statistics.median(w.rate for w in windows):,.0f} inf/s",
        f"{ratio:.1%}",
        f">= {RATIO_TARGET:.0%}",
        ratio >= RATIO_TARGET,
        f"mean batch {mean_batch:.1f}; per batch (ms): input {med.input_ms:.2f}, "
        f"ORT {med.infer_ms:.2f}, output {med.output_ms:.2f}, idle gap "
        f"{med.period_ms - med.input_ms - med.infer_ms - med.output_ms:.2f}",
    )


async def throughput_rows(
    manager: ModelManager, batch: int, seconds: float, repeats: int, submitters: int
) -> tuple[list[Row], float]:
    session = bare_session(manager, "mlp_big")
    model = manager.registry.find("mlp_big")
    offline: list[float] = []
    threaded: list[Window] = []
    asynced: list[Window] = []
    native: list[Window] = []
    for _ in range(repeats):
        offline.append(offline_rate(session, batch, seconds))
        native.append(await asyncio.to_thread(native_rate, model, 2 * batch, seconds))
        threaded.append(
            await asyncio.to_thread(threaded_rate, model, submitters, seconds)
        )
        asynced.append(await async_rate(model, 2 * batch, seconds))
    rows = [
        _throughput_row(f"C++ clients {2 * batch} in flight", batch, offline, native),
        _throughput_row(f"{submitters} threads infer", batch, offline, threaded),
        _throughput_row(f"asyncio {2 * batch} in flight", batch, offline, asynced),
    ]
    return rows, batch / statistics.median(offline) * 1e3


# -- report -----------------------------------------------------------------------


def print_report(rows: list[Row], args: argparse.Namespace, batch_ms: float) -> None:
    width = 118
    print("\n" + " ONNX Runtime Backend Benchmark Result ".center(width, "="))
    facts = [
        ("onnxruntime / numpy:", f"{ort.__version__} / {np.__version__}"),
        ("Intra-op / inter-op threads (both paths):", f"{args.threads} / 1"),
        ("Repeats (median shown):", str(args.repeats)),
        ("Batch-1 iterations per repeat:", str(args.iters)),
        (
            "Dynamic batcher (B / max queue delay):",
            f"{args.batch} / {args.delay_us} us",
        ),
        ("Offline batch time (mlp_big):", f"{batch_ms:.2f} ms"),
        ("Seconds per throughput window:", f"{args.seconds:g}"),
        ("GIL switch interval:", args.switch),
        ("Load average before / after (noise check):", args.load),
    ]
    for key, value in facts:
        print(f"{key:<48}{value:>24}")
    print("-" * width)
    header = (
        f"{'Scenario':<58}{'bare/offline':>14}{'tritonx':>14}"
        f"{'delta/ratio':>12}{'target':>12}{'result':>8}"
    )
    print(header)
    print("-" * width)
    for r in rows:
        print(
            f"{r.scenario:<58}{r.baseline:>14}{r.tritonx:>14}{r.delta:>12}"
            f"{r.target:>12}{'PASS' if r.ok else 'FAIL':>8}"
        )
    print("-" * width)
    for r in rows:
        print(f"{r.scenario + ':':<46}{r.note}")
    print("=" * width)


async def run(
    args: argparse.Namespace, root: Path, load: Callable[[], str]
) -> list[Row]:
    write_repository(root, args.batch, args.delay_us, args.threads, args.param)
    manager = ModelManager(ManagerOptions(repositories=[root]), _native.ModelRegistry())
    await manager.start()
    try:
        rows = await overhead_rows(
            manager, "add_sub", {"INPUT0": 16, "INPUT1": 16}, args.iters, args.repeats
        )
        rows += await overhead_rows(
            manager, "mlp_small", {"INPUT0": 16}, args.iters, args.repeats
        )
        tp_rows, batch_ms = await throughput_rows(
            manager, args.batch, args.seconds, args.repeats, args.submitters
        )
        rows += tp_rows
    finally:
        await manager.shutdown()
    args.load = load()
    print_report(rows, args, batch_ms)
    return rows


def apply_switch_interval(choice: str) -> str:
    """Set the GIL switch interval as the server would; returns a description.

    tritonx-server shortens it at start-up so a core worker waiting for the GIL (to
    call the backend, to deliver responses) is not held up by up to 5 ms of Python
    running on the event loop; an in-process benchmark must do the same to measure
    what the server does.
    """
    if choice == "off":
        return f"{sys.getswitchinterval() * 1e3:g} ms (CPython default)"
    if choice == "server":
        from tritonx import server_options

        value = getattr(server_options, "DEFAULT_SWITCH_INTERVAL_S", None)
        if value is None:
            return f"{sys.getswitchinterval() * 1e3:g} ms (server sets none)"
        sys.setswitchinterval(value)
        return f"{value * 1e3:g} ms (as tritonx-server)"
    sys.setswitchinterval(float(choice))
    return f"{float(choice) * 1e3:g} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--iters", type=int, default=2000, help="batch-1 calls per repeat"
    )
    parser.add_argument("--batch", type=int, default=32, help="preferred/max batch B")
    parser.add_argument("--delay-us", type=int, default=2000, help="max queue delay")
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="per throughput window"
    )
    parser.add_argument(
        "--submitters", type=int, default=0, help="infer threads (default 2*B)"
    )
    parser.add_argument(
        "--switch-interval",
        default="server",
        help="GIL switch interval in s; 'server': what tritonx-server sets "
        "(default), 'off': CPython's default",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra ORT config parameter for every model (both paths use it)",
    )
    args = parser.parse_args()
    args.param = dict(p.split("=", 1) for p in args.param)
    args.switch = apply_switch_interval(args.switch_interval)
    args.submitters = args.submitters or 2 * args.batch
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tritonx-bench-onnx-") as tmp:
        rows = asyncio.run(
            run(args, Path(tmp), lambda: f"{before:.2f} / {os.getloadavg()[0]:.2f}")
        )
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
