"""Cloud endpoints benchmark: SageMaker's /invocations and Vertex AI's predict route
against the KServe infer route, on tritonx and a reference Triton, side by side.

One small Python model (add_sub, FP32 [4], JSON bodies) isolates what each endpoint
costs per request. C closed-loop clients each keep one request in flight on their
own keep-alive connection (a raw asyncio HTTP/1.1 client, so that the client costs
little on a small machine). Reported: requests/s and median latency per endpoint
and concurrency, medians over --rounds alternating runs, with tritonx/reference
ratios.

    python benchmarks/bench_cloud.py --reference-cmd /path/to/triton_reference \\
        --concurrency 1,4 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _harness import (
    add_server_arguments,
    free_port,
    running,
    servers_to_compare,
    write_python_model,
)

MODEL = "add_sub"
CONFIG = """
backend: "python"
max_batch_size: 0
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
MODEL_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)
            ]))
        return out
"""
BODY = json.dumps(
    {
        "inputs": [
            {"name": n, "datatype": "FP32", "shape": [4], "data": [1.0, 2.0, 3.0, 4.0]}
            for n in ("INPUT0", "INPUT1")
        ]
    }
).encode()
HEALTH = "/health"
PREDICT = "/v1/endpoints/1/deployedModels/1:predict"
ENV = {
    "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": MODEL,
    "AIP_HEALTH_ROUTE": HEALTH,
    "AIP_PREDICT_ROUTE": PREDICT,
}
ENDPOINTS = ("kserve", "sagemaker", "vertex")


@dataclass
class Row:
    server: str
    endpoint: str
    concurrency: int
    requests_per_sec: float
    p50_us: float


def _request(path: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


async def _client(
    port: int, request: bytes, stop_at: float, latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.monotonic() < stop_at:
            sent = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if status != b"200":
                raise RuntimeError(f"{status!r}: {body[:200]!r}")
            latencies.append((time.perf_counter() - sent) * 1e6)
            done += 1
    finally:
        writer.close()
    return done


async def _measure(port: int, path: str, concurrency: int, seconds: float) -> Row:
    request = _request(path)
    await asyncio.gather(
        *(
            _client(port, request, time.monotonic() + 0.5, [])
            for _ in range(concurrency)
        )
    )
    latencies: list[float] = []
    start = time.monotonic()
    counts = await asyncio.gather(
        *(
            _client(port, request, start + seconds, latencies)
            for _ in range(concurrency)
        )
    )
    took = time.monotonic() - start
    return Row("", "", concurrency, sum(counts) / took, statistics.median(latencies))


def _table(rows: list[Row]) -> str:
    def median(server: str, endpoint: str, conc: int, field: str) -> float | None:
        values = [
            getattr(r, field)
            for r in rows
            if (r.server, r.endpoint, r.concurrency) == (server, endpoint, conc)
        ]
        return statistics.median(values) if values else None

    header = (
        f"{'endpoint':9s} {'conc':>4s} | {'tritonx req/s':>13s} {'p50 us':>7s} | "
        f"{'triton req/s':>12s} {'p50 us':>7s} | {'x req/s':>7s}"
    )
    lines = [header, "-" * len(header)]
    for endpoint in ENDPOINTS:
        for conc in sorted({r.concurrency for r in rows}):
            a = median("tritonx", endpoint, conc, "requests_per_sec")
            a_p50 = median("tritonx", endpoint, conc, "p50_us")
            b = median("reference", endpoint, conc, "requests_per_sec")
            b_p50 = median("reference", endpoint, conc, "p50_us")

            def fmt(v: float | None, width: int) -> str:
                return f"{v:{width}.0f}" if v is not None else f"{'-':>{width}s}"

            ratio = f"{a / b:7.2f}" if a and b else f"{'-':>7s}"
            lines.append(
                f"{endpoint:9s} {conc:4d} | {fmt(a, 13)} {fmt(a_p50, 7)} | "
                f"{fmt(b, 12)} {fmt(b_p50, 7)} | {ratio}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(p)
    p.add_argument("--concurrency", default="1,4")
    p.add_argument("--seconds", type=float, default=3.0, help="measured window")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--start-timeout", type=float, default=120.0)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    servers = servers_to_compare(args)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        write_python_model(repo, MODEL, CONFIG, MODEL_PY)
        for round_index in range(args.rounds):
            for name, cmd in servers:
                sagemaker, vertex = free_port(), free_port()
                extra = (
                    "--allow-sagemaker=true",
                    f"--sagemaker-port={sagemaker}",
                    "--allow-vertex-ai=true",
                    f"--vertex-ai-port={vertex}",
                    f"--vertex-ai-default-model={MODEL}",
                )
                with running(name, cmd, repo, ENV, args.start_timeout, extra) as (
                    http,
                    _,
                ):
                    targets = {
                        "kserve": (http, f"/v2/models/{MODEL}/infer"),
                        "sagemaker": (sagemaker, "/invocations"),
                        "vertex": (vertex, PREDICT),
                    }
                    for endpoint in ENDPOINTS:
                        port, path = targets[endpoint]
                        for conc in (int(c) for c in args.concurrency.split(",")):
                            row = asyncio.run(_measure(port, path, conc, args.seconds))
                            row.server, row.endpoint = name, endpoint
                            rows.append(row)
                            print(
                                f"  round {round_index + 1} {name:9s} {endpoint:9s} "
                                f"c={conc:<2d} {row.requests_per_sec:8.0f} req/s "
                                f"p50 {row.p50_us:6.0f} us",
                                flush=True,
                            )
    print()
    print(
        f"{MODEL} (python backend, FP32 [4] JSON bodies), closed-loop keep-alive "
        f"clients, medians of {args.rounds} rounds, {args.seconds:.0f} s windows, "
        f"{os.cpu_count()} CPUs"
    )
    print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
