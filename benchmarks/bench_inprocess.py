"""In-process API benchmark: one request at a time to a cheap Python model (identity,
FP32 [16]) through ``tritonx.api`` in this process, against tritonclient's gRPC
client to tritonx-server and (with --reference-cmd) to the real Triton, on the same
repository, one server at a time. Prints per-request medians and ratios.

    flock /work/wt/bench.lock python benchmarks/bench_inprocess.py \\
        --reference-cmd /path/to/triton_reference
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _harness import (
    add_server_arguments,
    running,
    servers_to_compare,
    write_python_model,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

CONFIG = """
name: "cheap"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
"""
DATA = np.arange(16, dtype=np.float32)


def median_us(call: Callable[[], object], count: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean time of ``count`` sequential calls."""
    for _ in range(min(count, 200)):  # warm up
        call()
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            call()
        means.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(means)


def in_process(repo: Path, count: int, rounds: int) -> float:
    import tritonx.api as api

    server = api.Server(model_repository=str(repo)).start(wait_until_ready=True)
    try:
        model = server.model("cheap")

        def call() -> object:
            return list(model.infer(inputs={"INPUT0": DATA}))

        return median_us(call, count, rounds)
    finally:
        server.stop()


def over_grpc(url: str, count: int, rounds: int) -> float:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput("INPUT0", [16], "FP32")
    tensor.set_data_from_numpy(DATA)
    try:
        return median_us(lambda: client.infer("cheap", [tensor]), count, rounds)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser)
    parser.add_argument("--count", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        write_python_model(repo, "cheap", CONFIG, MODEL)
        rows["tritonx.api (in process)"] = in_process(repo, args.count, args.rounds)
        for name, cmd in servers_to_compare(args):
            with running(name, cmd, repo, {}, timeout=120) as (_http, grpc):
                rows[f"{name} gRPC (tritonclient)"] = over_grpc(
                    f"127.0.0.1:{grpc}", args.count, args.rounds
                )
    base = (
        rows.get("reference gRPC (tritonclient)") or rows["tritonx gRPC (tritonclient)"]
    )
    print(f"{'path':<30} {'median us/request':>18} {'speed-up':>9}")
    for name, value in rows.items():
        print(f"{name:<30} {value:>18.1f} {base / value:>8.2f}x")
    print(
        f"(speed-up: against {'Triton' if 'reference gRPC (tritonclient)' in rows else 'tritonx'} over gRPC)"
    )


if __name__ == "__main__":
    main()
