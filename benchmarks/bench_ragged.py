"""Ragged batching benchmark: a served ragged ONNX model against bare onnxruntime.

The model is a per-token MLP (16-256-256-16, FP32) over a ragged input X (each
request sends [1, tokens * 16] floats, tokens drawn from --lengths), with a
BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO batch input for per-request sums and a
BATCH_SCATTER_WITH_INPUT_SHAPE batch output. Two rows, in one process:

1. served: the model through the real ModelManager and the dynamic batcher
   (max_batch_size --batch, --delay-us), loaded by the core's C++ load generator:
   one client group per length, --in-flight closed-loop clients each, so requests
   of every length meet in batches. Reports requests/s, tokens/s and the mean batch
   (inference_count / execution_count).
2. bare: ``session.run`` on batches built as the server builds them (the same
   concatenated input and offsets), of the served mean batch size, lengths drawn
   from the same set, with the SessionOptions the backend used.

The ratio served / bare (tokens/s) is the cost of serving ragged batches.

    PYTHONPATH=python python benchmarks/bench_ragged.py
    flock /work/wt/bench.lock env PYTHONPATH=python python benchmarks/bench_ragged.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from tritonx import _native
from tritonx.repository import ManagerOptions, ModelManager

WIDTH = 16
HIDDEN = 256


def build_model(path: Path) -> None:
    rng = np.random.default_rng(0)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        array = (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
        return numpy_helper.from_array(array, name)

    def const(name: str, value: list[int]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(value, np.int64), name)

    nodes = [
        helper.make_node("Reshape", ["X", "rows"], ["T"]),
        helper.make_node("MatMul", ["T", "W1"], ["H1"]),
        helper.make_node("Relu", ["H1"], ["A1"]),
        helper.make_node("MatMul", ["A1", "W2"], ["H2"]),
        helper.make_node("Relu", ["H2"], ["A2"]),
        helper.make_node("MatMul", ["A2", "W3"], ["O"]),
        helper.make_node("Reshape", ["O", "flat"], ["Y"]),
        # Per-request sums of Y: cumulative sum, then differences at the offsets.
        helper.make_node("CumSum", ["Y", "axis0"], ["C"]),
        helper.make_node("Concat", ["zero", "C"], ["C0"], axis=0),
        helper.make_node("Slice", ["OFFSETS", "one", "end"], ["HI_AT"]),
        helper.make_node("Slice", ["OFFSETS", "start", "flat"], ["LO_AT"]),
        helper.make_node("Gather", ["C0", "HI_AT"], ["HI"], axis=0),
        helper.make_node("Gather", ["C0", "LO_AT"], ["LO"], axis=0),
        helper.make_node("Sub", ["HI", "LO"], ["S"]),
        helper.make_node("Unsqueeze", ["S", "one"], ["SUM"]),
    ]
    constants = [
        weight("W1", (WIDTH, HIDDEN)),
        weight("W2", (HIDDEN, HIDDEN)),
        weight("W3", (HIDDEN, WIDTH)),
        const("rows", [-1, WIDTH]),
        const("flat", [-1]),
        numpy_helper.from_array(np.array(0, np.int64), "axis0"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        const("one", [1]),
        const("end", [2**62]),
        const("start", [0]),
    ]
    graph = helper.make_graph(
        nodes,
        "ragged_mlp",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, [None]),
            helper.make_tensor_value_info("OFFSETS", TensorProto.INT32, [None]),
        ],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None]),
            helper.make_tensor_value_info("SUM", TensorProto.FLOAT, [None, 1]),
        ],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True)
    onnx.save(model, str(path))


def config(batch: int, delay_us: int, threads: int) -> str:
    return f"""
name: "ragged_mlp"
backend: "onnxruntime"
max_batch_size: {batch}
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true }} ]
batch_input [ {{ kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO
                 target_name: "OFFSETS" data_type: TYPE_INT32 source_input: "X" }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }},
         {{ name: "SUM" data_type: TYPE_FP32 dims: [ 1 ] }} ]
batch_output [ {{ target_name: "Y" kind: BATCH_SCATTER_WITH_INPUT_SHAPE
                  source_input: "X" }} ]
dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters {{ key: "intra_op_thread_count" value: {{ string_value: "{threads}" }} }}
parameters {{ key: "inter_op_thread_count" value: {{ string_value: "1" }} }}
"""


def served(
    model: _native.Model, lengths: list[int], in_flight: int, seconds: float
) -> tuple[float, float, float]:
    """(requests/s, tokens/s, mean batch) of one closed-loop group per length."""
    rng = np.random.default_rng(1)
    groups = [
        [("X", "FP32", [1, n * WIDTH], rng.standard_normal((1, n * WIDTH), np.float32))]
        for n in lengths
    ]
    results: list[dict[str, float]] = [{} for _ in groups]

    def run(i: int, duration: float) -> None:
        results[i] = _native.generate_load(model, groups[i], in_flight, duration)

    def all_groups(duration: float) -> None:
        threads = [
            threading.Thread(target=run, args=(i, duration)) for i in range(len(groups))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    all_groups(min(1.0, seconds / 4))  # warm-up
    before = model.statistics()
    start = time.perf_counter()
    all_groups(seconds)
    elapsed = time.perf_counter() - start
    after = model.statistics()
    requests = after["inference_count"] - before["inference_count"]
    executions = max(after["execution_count"] - before["execution_count"], 1)
    failed = sum(int(r["failed"]) for r in results)
    if failed:
        raise RuntimeError(f"{failed} requests failed")
    tokens = sum(
        float(r["completed"]) * n for r, n in zip(results, lengths, strict=True)
    )
    return requests / elapsed, tokens / elapsed, requests / executions


def bare(
    session: ort.InferenceSession, lengths: list[int], batch: float, seconds: float
) -> tuple[float, float]:
    """(requests/s, tokens/s) of session.run on gathered ragged batches."""
    rng = np.random.default_rng(2)
    size = max(1, round(batch))
    feeds = []
    for _ in range(16):
        chosen = rng.choice(lengths, size)
        x = rng.standard_normal(int(chosen.sum()) * WIDTH, np.float32)
        offsets = np.concatenate([[0], np.cumsum(chosen * WIDTH)]).astype(np.int32)
        feeds.append(({"X": x, "OFFSETS": offsets}, int(chosen.sum())))
    session.run(None, feeds[0][0])
    runs = tokens = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        feed, count = feeds[runs % len(feeds)]
        session.run(None, feed)
        runs += 1
        tokens += count
    return runs * size / elapsed, tokens / elapsed


async def main_async(args: argparse.Namespace) -> None:
    lengths = [int(n) for n in args.lengths.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_model(root / "ragged_mlp" / "1" / "model.onnx")
        (root / "ragged_mlp" / "config.pbtxt").write_text(
            config(args.batch, args.delay_us, args.threads)
        )
        manager = ModelManager(
            ManagerOptions(repositories=[root]), _native.ModelRegistry()
        )
        await manager.start()
        try:
            loaded = manager.get("ragged_mlp")
            model = manager.registry.find("ragged_mlp")
            session = ort.InferenceSession(
                str(loaded.backend_model.path),
                sess_options=loaded.backend_model.settings.options,
                providers=["CPUExecutionProvider"],
            )
            rows = []
            for _ in range(args.repeats):
                rps, tps, mean_batch = await asyncio.to_thread(
                    served, model, lengths, args.in_flight, args.seconds
                )
                bare_rps, bare_tps = bare(session, lengths, mean_batch, args.seconds)
                rows.append((rps, tps, mean_batch, bare_rps, bare_tps))
        finally:
            await manager.shutdown()
    print("=" * 64)
    print(
        f"ragged MLP {WIDTH}-{HIDDEN}-{HIDDEN}-{WIDTH}, tokens per request {lengths}, "
        f"max batch {args.batch}, delay {args.delay_us} us, "
        f"{args.in_flight} in flight per length, {args.threads} intra-op threads, "
        f"{os.cpu_count()} cores"
    )
    print(
        f"{'served req/s':>12} {'tokens/s':>10} {'batch':>6} {'bare req/s':>11} "
        f"{'tokens/s':>10} {'ratio':>6}"
    )
    for rps, tps, mean_batch, bare_rps, bare_tps in rows:
        print(
            f"{rps:12.0f} {tps:10.0f} {mean_batch:6.1f} {bare_rps:11.0f} "
            f"{bare_tps:10.0f} {tps / bare_tps:6.2f}"
        )
    ratios = sorted(r[1] / r[4] for r in rows)
    print(f"median ratio served/bare (tokens/s): {ratios[len(ratios) // 2]:.2f}")
    print("=" * 64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="4,16,32,64", help="tokens per request")
    parser.add_argument("--batch", type=int, default=32, help="max_batch_size")
    parser.add_argument("--delay-us", type=int, default=2000, help="max queue delay")
    parser.add_argument("--in-flight", type=int, default=16, help="clients per length")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
