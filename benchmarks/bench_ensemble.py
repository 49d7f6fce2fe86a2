"""Ensemble benchmark: a 3-step ensemble of cheap Python models.

1. Throughput with perf_analyzer, tritonx and a reference Triton side by side in one
   run (one server at a time on the same repository, gRPC and HTTP).
2. The in-process cost of an ensemble step: the core's microbenchmark
   (build/dev/tests/cpp/ensemble_overhead: three C++ echo models called one by one
   vs as a 3-step ensemble), and the same comparison from Python with ``Model.infer``
   on the three Python models and on the ensemble, in one process.

    python benchmarks/bench_ensemble.py --reference-cmd /path/to/triton_reference \\
        --concurrency 1,4 --measurement-interval 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _harness import add_server_arguments, run_perf_analyzer, running

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OVERHEAD_BIN = ROOT / "build" / "dev" / "tests" / "cpp" / "ensemble_overhead"

STEP_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(
                "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""

IO = """max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
"""


def write_repo(repo: Path) -> None:
    """s1, s2, s3 (identity, dynamic batching, one instance each) and ens3 =
    s1 -> s2 -> s3."""
    for name in ("s1", "s2", "s3"):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.py").write_text(STEP_MODEL)
        (repo / name / "config.pbtxt").write_text(
            f'name: "{name}"\nbackend: "python"\n{IO}dynamic_batching {{ }}\n'
            "instance_group [ { count: 1, kind: KIND_CPU } ]\n"
        )
    (repo / "ens3" / "1").mkdir(parents=True)
    steps = []
    for i, name in enumerate(("s1", "s2", "s3")):
        src = "INPUT0" if i == 0 else f"t{i}"
        dst = "OUTPUT0" if i == 2 else f"t{i + 1}"
        steps.append(
            f'{{ model_name: "{name}" model_version: -1 '
            f'input_map {{ key: "INPUT0" value: "{src}" }} '
            f'output_map {{ key: "OUTPUT0" value: "{dst}" }} }}'
        )
    (repo / "ens3" / "config.pbtxt").write_text(
        f'name: "ens3"\nplatform: "ensemble"\n{IO}'
        f"ensemble_scheduling {{ step [ {', '.join(steps)} ] }}\n"
    )


def source_tree_env() -> dict[str, str]:
    """Run tritonx from this checkout when it has a built core (dev builds)."""
    if any((ROOT / "python" / "tritonx").glob("_C*.so")):
        return {"PYTHONPATH": str(ROOT / "python")}
    return {}


def perf_rows(
    name: str,
    cmd: Sequence[str],
    repo: Path,
    args: argparse.Namespace,
    env: dict[str, str],
) -> dict[tuple[str, int], tuple[float, float]]:
    rows = {}
    with running(name, cmd, repo, env, 180.0) as (http, grpc):
        for protocol in args.protocols:
            url = f"127.0.0.1:{grpc if protocol == 'grpc' else http}"
            for concurrency in args.concurrency:
                row = run_perf_analyzer(
                    args.perf_analyzer,
                    "ens3",
                    url,
                    protocol,
                    concurrency,
                    args.measurement_interval,
                )
                rate, p99 = float(row["Inferences/Second"]), float(row["p99 latency"])
                rows[(protocol, concurrency)] = (rate, p99)
                print(
                    f"  {name:9s} {protocol:4s} c={concurrency:<2d} {rate:9.1f} "
                    f"infer/s  p99 {p99:7.0f} us",
                    flush=True,
                )
    return rows


def python_overhead(repo: Path, iterations: int) -> tuple[float, float]:
    """Median us per request: the three models one by one, and the ensemble, with
    ``Model.infer`` from one Python thread (requests built in Python each time)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "python"))
    from tritonx import _native
    from tritonx.repository.model_manager import ManagerOptions, ModelManager

    context = _native.ServerContext()
    manager = ModelManager(
        ManagerOptions(repositories=[repo]), context.registry, context
    )
    asyncio.run(manager.start())
    try:
        x = np.ones((1, 16), dtype=np.float32)
        models = [manager.get(n).core for n in ("s1", "s2", "s3")]
        ensemble = manager.get("ens3").core

        def one_by_one() -> None:
            data = x
            for model in models:
                request = _native.Request(inputs=[("INPUT0", "FP32", [1, 16], data)])
                data = model.infer(request).outputs[0].as_numpy()

        def chained() -> None:
            ensemble.infer(_native.Request(inputs=[("INPUT0", "FP32", [1, 16], x)]))

        samples: dict[str, list[float]] = {"direct": [], "ensemble": []}
        for _ in range(3):
            for key, fn in (("direct", one_by_one), ("ensemble", chained)):
                start = time.perf_counter()
                for _ in range(iterations):
                    fn()
                samples[key].append((time.perf_counter() - start) / iterations * 1e6)
        return statistics.median(samples["direct"]), statistics.median(
            samples["ensemble"]
        )
    finally:
        asyncio.run(manager.shutdown())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(p)
    p.add_argument("--concurrency", default="1,4")
    p.add_argument("--protocols", default="grpc,http")
    p.add_argument("--measurement-interval", type=int, default=2000, metavar="MS")
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--skip-perf", action="store_true")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.protocols = [x.strip() for x in args.protocols.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        write_repo(repo)
        if not args.skip_perf:
            if not args.perf_analyzer:
                p.error("perf_analyzer not found: pass --perf-analyzer")
            print("tritonx:", flush=True)
            ours = perf_rows(
                "tritonx", shlex.split(args.tritonx_cmd), repo, args, source_tree_env()
            )
            theirs = {}
            if args.reference_cmd:
                print("reference:", flush=True)
                theirs = perf_rows(
                    "reference", shlex.split(args.reference_cmd), repo, args, {}
                )
            print(
                f"\nens3 (3 python identity steps), FP32 [1,16], "
                f"{args.measurement_interval} ms windows, {os.cpu_count()} CPUs"
            )
            print("proto conc | tritonx inf/s  p99 us | ref inf/s  p99 us | x inf/s")
            for key in sorted(ours):
                a = ours[key]
                b = theirs.get(key)
                ref = f"{b[0]:9.1f} {b[1]:7.0f}" if b else f"{'-':>9s} {'-':>7s}"
                ratio = f"{a[0] / b[0]:7.2f}" if b and b[0] else "      -"
                print(
                    f"{key[0]:5s} {key[1]:4d} | {a[0]:13.1f} {a[1]:7.0f} | {ref} | {ratio}"
                )
        print("\nin-process cost of a step")
        if OVERHEAD_BIN.exists():
            out = subprocess.run(
                [str(OVERHEAD_BIN)], capture_output=True, text=True, check=True
            ).stdout
            print("core (C++ echo models):\n" + out.rstrip())
        direct, chained = python_overhead(repo, args.iterations)
        print(
            f"python models, Model.infer: one by one {direct:.1f} us, ensemble "
            f"{chained:.1f} us, per step {(chained - direct) / 3:+.1f} us"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
