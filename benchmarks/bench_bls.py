"""BLS benchmark: a Python model calling a cheap Python model, tritonx and a
reference Triton side by side with perf_analyzer (one server at a time on the same
repository).

Models: ``cheap`` (identity, FP32 [16]), ``bls_sync`` (``exec()`` to cheap from a
plain ``execute``) and ``bls_async`` (``async_exec()`` from an ``async def
execute``); ``cheap`` alone is the baseline a BLS call adds to. ``--call-cost N`` also times
the calls themselves, away from the client and its load: ``bls_loop`` makes
``LOOP_CALLS`` ``exec()`` calls to cheap per request and answers microseconds per
call, ``bls_async_loop`` the same with ``await async_exec()``; the table gives the
median of N requests per server.

    flock /work/wt/bench.lock python benchmarks/bench_bls.py \\
        --reference-cmd /path/to/triton_reference --concurrency 1,4
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

ROOT = Path(__file__).resolve().parent.parent

CHEAP = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
"""

BLS_SYNC = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            response = pb_utils.InferenceRequest(
                model_name="cheap", requested_output_names=["OUTPUT0"],
                inputs=[pb_utils.get_input_tensor_by_name(r, "INPUT0")]).exec()
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            out.append(pb_utils.InferenceResponse(response.output_tensors()))
        return out
"""

BLS_ASYNC = """
import asyncio

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        calls = [pb_utils.InferenceRequest(
            model_name="cheap", requested_output_names=["OUTPUT0"],
            inputs=[pb_utils.get_input_tensor_by_name(r, "INPUT0")]).async_exec()
            for r in requests]
        out = []
        for response in await asyncio.gather(*calls):
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            out.append(pb_utils.InferenceResponse(response.output_tensors()))
        return out
"""

LOOP_CALLS = 500

# The loop models share this source: ``{call}`` is how one call is made.
LOOP_SOURCE = """
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    {define}execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0")
            start = time.perf_counter()
            for _ in range(LOOP_CALLS):
                response = {call}
                if response.has_error():
                    raise pb_utils.TritonModelException(response.error().message())
            per_call_us = (time.perf_counter() - start) / LOOP_CALLS * 1e6
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(
                "OUTPUT0", np.full([16], per_call_us, np.float32))]))
        return out
"""
_CALL = """pb_utils.InferenceRequest(
                    model_name="cheap", requested_output_names=["OUTPUT0"],
                    inputs=[x])"""
BLS_LOOP = f"LOOP_CALLS = {LOOP_CALLS}\n" + LOOP_SOURCE.format(
    define="def ", call=f"{_CALL}.exec()"
)
BLS_ASYNC_LOOP = f"LOOP_CALLS = {LOOP_CALLS}\n" + LOOP_SOURCE.format(
    define="async def ", call=f"await {_CALL}.async_exec()"
)

IO = """max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

MODELS = {
    "cheap": CHEAP,
    "bls_sync": BLS_SYNC,
    "bls_async": BLS_ASYNC,
    "bls_loop": BLS_LOOP,
    "bls_async_loop": BLS_ASYNC_LOOP,
}


def write_repo(repo: Path) -> None:
    for name, source in MODELS.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.py").write_text(source)
        (repo / name / "config.pbtxt").write_text(
            f'name: "{name}"\nbackend: "python"\n{IO}'
        )


def source_tree_env() -> dict[str, str]:
    """Run tritonx from this checkout when it has a built core (dev builds)."""
    if any((ROOT / "python" / "tritonx").glob("_C*.so")):
        return {"PYTHONPATH": str(ROOT / "python")}
    return {}


LOOP_MODELS = {"exec() call": "bls_loop", "async_exec() call": "bls_async_loop"}

Rows = dict[tuple[str, str, int], tuple[float, float]]


def call_cost_us(http_port: int, model: str, requests: int) -> float:
    """Median microseconds per call over ``requests`` requests to a loop model."""
    import numpy as np
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(
        f"127.0.0.1:{http_port}", network_timeout=600.0
    )
    try:
        tensor = httpclient.InferInput("INPUT0", [16], "FP32")
        tensor.set_data_from_numpy(np.zeros(16, np.float32))
        client.infer(model, [tensor])  # warm-up
        costs = [
            float(client.infer(model, [tensor]).as_numpy("OUTPUT0")[0])
            for _ in range(requests)
        ]
    finally:
        client.close()
    return statistics.median(costs)


def perf_rows(
    name: str,
    cmd: Sequence[str],
    repo: Path,
    args: argparse.Namespace,
    env: dict[str, str],
) -> Rows:
    rows: Rows = {}
    with running(name, cmd, repo, env, 180.0) as (http, grpc):
        if args.call_cost:
            for label, model in LOOP_MODELS.items():
                cost = call_cost_us(http, model, args.call_cost)
                rows[(label, "us", 0)] = (cost, 0.0)
                print(f"  {name:9s} {label} {cost:8.1f} us (median)", flush=True)
        for model in args.models:
            for protocol in args.protocols:
                url = f"127.0.0.1:{grpc if protocol == 'grpc' else http}"
                for concurrency in args.concurrency:
                    row = run_perf_analyzer(
                        args.perf_analyzer,
                        model,
                        url,
                        protocol,
                        concurrency,
                        args.measurement_interval,
                    )
                    rate = float(row["Inferences/Second"])
                    p99 = float(row["p99 latency"])
                    rows[(model, protocol, concurrency)] = (rate, p99)
                    print(
                        f"  {name:9s} {model:9s} {protocol:4s} c={concurrency:<2d} "
                        f"{rate:9.1f} infer/s  p99 {p99:7.0f} us",
                        flush=True,
                    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(p)
    p.add_argument("--models", default="cheap,bls_sync,bls_async")
    p.add_argument("--concurrency", default="1,4")
    p.add_argument("--protocols", default="grpc")
    p.add_argument("--measurement-interval", type=int, default=2000, metavar="MS")
    p.add_argument(
        "--call-cost",
        type=int,
        default=0,
        metavar="N",
        help="also time exec() and async_exec() calls inside a model: median of N "
        "loop-model requests",
    )
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.perf_analyzer:
        p.error("perf_analyzer not found: pass --perf-analyzer")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.protocols = [x.strip() for x in args.protocols.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        write_repo(repo)
        print("tritonx:", flush=True)
        ours = perf_rows(
            "tritonx", shlex.split(args.tritonx_cmd), repo, args, source_tree_env()
        )
        theirs: Rows = {}
        if args.reference_cmd:
            print("reference:", flush=True)
            theirs = perf_rows(
                "reference", shlex.split(args.reference_cmd), repo, args, {}
            )
    print(
        f"\nFP32 [16], one instance per model, {args.measurement_interval} ms "
        f"windows, {os.cpu_count()} CPUs"
    )
    print("model     proto conc | tritonx inf/s  p99 us | ref inf/s  p99 us | x inf/s")
    for key in ours:
        a, b = ours[key], theirs.get(key)
        if key[1] == "us":  # the call cost: lower is better, ratio reference/ours
            ref = f"{b[0]:9.1f}" if b else f"{'-':>9s}"
            speedup = f"{b[0] / a[0]:7.2f}" if b and a[0] else "      -"
            print(f"{key[0]:18s} us | {a[0]:13.1f}         | {ref}         | {speedup}")
            continue
        ref = f"{b[0]:9.1f} {b[1]:7.0f}" if b else f"{'-':>9s} {'-':>7s}"
        ratio = f"{a[0] / b[0]:7.2f}" if b and b[0] else "      -"
        print(
            f"{key[0]:9s} {key[1]:5s} {key[2]:4d} | {a[0]:13.1f} {a[1]:7.0f} | "
            f"{ref} | {ratio}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
