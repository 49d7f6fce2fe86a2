"""Sequence batcher benchmark: perf_analyzer --sequence-length on an accumulate
Python model, direct and oldest strategies, tritonx and a reference Triton.

The model (written into a temporary repository) keeps one running sum per
correlation id in Python, reset at START (control inputs START and CORRID), so it
behaves the same on both servers. perf_analyzer keeps `concurrency` sequences in
flight over gRPC; the table shows per-row medians over --rounds with tritonx /
reference ratios (inferences/s: higher is better; p99: lower is better).

    flock /work/wt/bench.lock python benchmarks/bench_sequence.py \\
        --reference-cmd /work/shared/tools/triton_reference --rounds 1
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from _harness import add_server_arguments, run_perf_analyzer, running

ROOT = Path(__file__).resolve().parents[1]

ACCUMULATE = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        responses = []
        for r in requests:
            start = pb_utils.get_input_tensor_by_name(r, "START").as_numpy()
            ready = pb_utils.get_input_tensor_by_name(r, "READY").as_numpy()
            x = pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy()
            key = r.correlation_id()
            if ready.flat[0]:
                if start.flat[0]:
                    self.sums[key] = 0
                # perf_analyzer sends random values: keep the sum in int32 range.
                self.sums[key] = (self.sums.get(key, 0) + int(x.flat[0])) % 2**31
            total = np.full(x.shape, self.sums.get(key, 0), dtype=np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", total)]))
        return responses
"""

STRATEGIES = {
    "direct": "direct { }",
    "oldest": "oldest { max_candidate_sequences: 16 }",
}


def write_repo(repo: Path) -> None:
    for strategy, block in STRATEGIES.items():
        model = repo / f"accumulate_{strategy}"
        (model / "1").mkdir(parents=True)
        (model / "1" / "model.py").write_text(ACCUMULATE)
        (model / "config.pbtxt").write_text(
            f'name: "accumulate_{strategy}"\nbackend: "python"\nmax_batch_size: 8\n'
            'input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
            'output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
            f"sequence_batching {{\n  {block}\n  control_input [\n"
            '    { name: "START" control [ { kind: CONTROL_SEQUENCE_START '
            "int32_false_true: [ 0, 1 ] } ] },\n"
            '    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY '
            "int32_false_true: [ 0, 1 ] } ] }\n  ]\n}\n"
            "instance_group [ { count: 2 kind: KIND_CPU } ]\n"
        )


def source_tree_env() -> dict[str, str]:
    """Run tritonx from this checkout when it has a built core (dev builds)."""
    if any((ROOT / "python" / "tritonx").glob("_C*.so")):
        return {"PYTHONPATH": str(ROOT / "python")}
    return {}


Key = tuple[str, int]  # (strategy, concurrency)


def measure(
    name: str, cmd: Sequence[str], repo: Path, args: argparse.Namespace, env: dict
) -> dict[Key, tuple[float, float]]:
    rows = {}
    with running(name, cmd, repo, env, 180.0) as (_, grpc):
        for strategy in args.strategies:
            for concurrency in args.concurrency:
                row = run_perf_analyzer(
                    args.perf_analyzer,
                    f"accumulate_{strategy}",
                    f"127.0.0.1:{grpc}",
                    "grpc",
                    concurrency,
                    args.measurement_interval,
                    extra=["--sequence-length", str(args.sequence_length)],
                )
                value = (float(row["Inferences/Second"]), float(row["p99 latency"]))
                rows[(strategy, concurrency)] = value
                print(
                    f"  {name:9s} {strategy:6s} c={concurrency:<2d} "
                    f"{value[0]:9.1f} inf/s  p99 {value[1]:7.0f} us",
                    flush=True,
                )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(p)
    p.add_argument("--concurrency", default="4,16")
    p.add_argument("--strategies", default="direct,oldest")
    p.add_argument("--sequence-length", type=int, default=16)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--measurement-interval", type=int, default=2000, metavar="MS")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.perf_analyzer:
        p.error("perf_analyzer not found: pass --perf-analyzer or set PERF_ANALYZER")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.strategies = [s.strip() for s in args.strategies.split(",")]

    samples: dict[str, dict[Key, list[tuple[float, float]]]] = {
        "tritonx": {},
        "reference": {},
    }
    servers = [("tritonx", shlex.split(args.tritonx_cmd), source_tree_env())]
    if args.reference_cmd:
        servers.append(("reference", shlex.split(args.reference_cmd), {}))
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        write_repo(repo)
        for round_index in range(args.rounds):
            for name, cmd, env in servers:
                print(f"round {round_index + 1}, {name}:", flush=True)
                for key, value in measure(name, cmd, repo, args, env).items():
                    samples[name].setdefault(key, []).append(value)

    def median(name: str, key: Key) -> tuple[float, float] | None:
        values = samples[name].get(key)
        if not values:
            return None
        return (
            statistics.median(v[0] for v in values),
            statistics.median(v[1] for v in values),
        )

    print(
        f"\naccumulate (python, max_batch_size 8, 2 instances), gRPC, sequence length "
        f"{args.sequence_length}, medians of {args.rounds} round(s), "
        f"{args.measurement_interval} ms windows, {os.cpu_count()} CPUs"
    )
    print(
        "strategy conc | tritonx inf/s  p99 us | triton inf/s  p99 us | x inf/s x p99"
    )
    for key in sorted(samples["tritonx"]):
        a = median("tritonx", key)
        b = median("reference", key)
        assert a is not None
        ref = f"{b[0]:12.1f} {b[1]:7.0f}" if b else f"{'-':>12s} {'-':>7s}"
        ratio = (
            f"{a[0] / b[0]:7.2f} {a[1] / b[1]:5.2f}"
            if b and b[0] and b[1]
            else f"{'-':>7s} {'-':>5s}"
        )
        print(f"{key[0]:8s} {key[1]:4d} | {a[0]:13.1f} {a[1]:7.0f} | {ref} | {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
