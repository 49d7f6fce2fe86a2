"""Iterative-sequence benchmark (continuous batching): tritonx against a reference
Triton on the same decoupled Python model, side by side.

The model (written by this script into a temporary repository) has
``sequence_batching { iterative_sequence: true }``: a request asks for N tokens, and
each execution sends one token per request of the batch and reschedules those that
are not done, so the batcher mixes new and running requests in every batch.
C clients each keep one request in flight on a gRPC stream (tritonclient's aio
client), sending the next when FINAL arrives. Reported: tokens/s, requests/s and
the median / p99 time to the first token; medians over --rounds alternating runs,
with tritonx/reference ratios (perf_analyzer cannot drive this: it sends sequence
models START/END requests, on which Triton 2.51 hangs when they are rescheduled).

    python benchmarks/bench_iterative.py --reference-cmd /path/to/triton_reference \\
        --concurrency 1,8 --tokens 16 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _harness import (
    add_server_arguments,
    running,
    servers_to_compare,
    write_python_model,
)

MODEL = "iterative_tokens"
CONFIG = """
backend: "python"
max_batch_size: 8
input [ { name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "TOKEN" data_type: TYPE_INT32 dims: [ 1 ] } ]
sequence_batching {
  iterative_sequence: true
  control_input [
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] }
  ]
}
model_transaction_policy { decoupled: true }
"""
MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
RESCHEDULE = pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE


class TritonPythonModel:
    def initialize(self, args):
        self.sent = {}

    def execute(self, requests):
        for r in requests:
            if not pb_utils.get_input_tensor_by_name(r, "READY").as_numpy()[0, 0]:
                continue
            key = r.correlation_id()
            n = self.sent.get(key, 0) + 1
            want = int(pb_utils.get_input_tensor_by_name(r, "COUNT").as_numpy()[0, 0])
            token = pb_utils.Tensor("TOKEN", np.array([[n]], np.int32))
            response = pb_utils.InferenceResponse([token])
            sender = r.get_response_sender()
            if n >= want:
                self.sent.pop(key, None)
                sender.send(response, flags=FINAL)
            else:
                self.sent[key] = n
                r.set_release_flags(RESCHEDULE)
                sender.send(response)
        return None
"""


@dataclass
class Row:
    server: str
    concurrency: int
    tokens_per_sec: float
    requests_per_sec: float
    ttft_p50_us: float
    ttft_p99_us: float


async def _client(url: str, tokens: int, stop_at: float, out: list[float]) -> int:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)
    count = grpcclient.InferInput("COUNT", [1, 1], "INT32")
    count.set_data_from_numpy(np.array([[tokens]], np.int32))
    queue: asyncio.Queue[dict | None] = asyncio.Queue()

    async def requests():
        while True:
            item = await queue.get()
            if item is None:
                return
            yield item

    received = 0
    stream = client.stream_infer(requests())
    try:
        while time.monotonic() < stop_at:
            sent = time.perf_counter()
            await queue.put({"model_name": MODEL, "inputs": [count]})
            first = True
            async for result, error in stream:
                if error is not None:
                    raise RuntimeError(str(error))
                if first:
                    out.append((time.perf_counter() - sent) * 1e6)
                    first = False
                response = result.get_response()
                if response.outputs:
                    received += 1
                if response.parameters["triton_final_response"].bool_param:
                    break
    finally:
        await queue.put(None)
        await client.close()
    return received


async def _measure(url: str, concurrency: int, tokens: int, seconds: float) -> Row:
    ttft: list[float] = []
    # Warm-up, then the measured window.
    await asyncio.gather(
        *(_client(url, tokens, time.monotonic() + 0.5, []) for _ in range(concurrency))
    )
    start = time.monotonic()
    counts = await asyncio.gather(
        *(_client(url, tokens, start + seconds, ttft) for _ in range(concurrency))
    )
    took = time.monotonic() - start
    ttft.sort()
    return Row(
        "",
        concurrency,
        sum(counts) / took,
        sum(counts) / tokens / took,
        statistics.median(ttft),
        ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))],
    )


def _table(rows: list[Row]) -> str:
    def median(server: str, concurrency: int, field: str) -> float | None:
        values = [
            getattr(r, field)
            for r in rows
            if r.server == server and r.concurrency == concurrency
        ]
        return statistics.median(values) if values else None

    header = (
        f"{'conc':>4s} | {'tritonx tok/s':>13s} {'ttft p50':>8s} {'p99':>7s} | "
        f"{'triton tok/s':>12s} {'ttft p50':>8s} {'p99':>7s} | {'x tok/s':>7s} "
        f"{'x p50':>6s}"
    )
    lines = [header, "-" * len(header)]
    for conc in sorted({r.concurrency for r in rows}):
        cells = []
        for server in ("tritonx", "reference"):
            tok = median(server, conc, "tokens_per_sec")
            p50 = median(server, conc, "ttft_p50_us")
            p99 = median(server, conc, "ttft_p99_us")
            cells.append((tok, p50, p99))
        (a_tok, a_p50, a_p99), (b_tok, b_p50, b_p99) = cells

        def fmt(v: float | None, width: int) -> str:
            return f"{v:{width}.0f}" if v is not None else f"{'-':>{width}s}"

        ratio = (
            f"{a_tok / b_tok:7.2f} {a_p50 / b_p50:6.2f}"
            if a_tok and b_tok and a_p50 and b_p50
            else f"{'-':>7s} {'-':>6s}"
        )
        lines.append(
            f"{conc:4d} | {fmt(a_tok, 13)} {fmt(a_p50, 8)} {fmt(a_p99, 7)} | "
            f"{fmt(b_tok, 12)} {fmt(b_p50, 8)} {fmt(b_p99, 7)} | {ratio}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(p)
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--tokens", type=int, default=16, help="tokens per request (N)")
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
                with running(name, cmd, repo, {}, args.start_timeout) as (_, grpc):
                    for conc in (int(c) for c in args.concurrency.split(",")):
                        row = asyncio.run(
                            _measure(
                                f"127.0.0.1:{grpc}", conc, args.tokens, args.seconds
                            )
                        )
                        row.server = name
                        rows.append(row)
                        print(
                            f"  round {round_index + 1} {name:9s} c={conc:<2d} "
                            f"{row.tokens_per_sec:8.0f} tok/s "
                            f"{row.requests_per_sec:7.1f} req/s  ttft p50 "
                            f"{row.ttft_p50_us:6.0f} us p99 {row.ttft_p99_us:6.0f} us",
                            flush=True,
                        )
    print()
    print(
        f"{MODEL} (decoupled python backend, iterative sequence, max_batch_size 8), "
        f"{args.tokens} tokens per request, gRPC streaming, medians of {args.rounds} "
        f"rounds, {args.seconds:.0f} s windows, {os.cpu_count()} CPUs"
    )
    print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
