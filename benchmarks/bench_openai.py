"""Token streaming: tritonx-openai's /v1/completions against KServe generate_stream
on tritonx and on a reference Triton, with the same decoupled Python model.

The model ("tokens", vLLM's request format on the python backend) streams
``max_tokens`` short tokens, one response each, without sleeping: what is measured is
the serving path per token (SSE framing, JSON, the frontend), not a model. Triton
2.51 has no OpenAI frontend, so the reference's row is its generate_stream, the
closest thing it serves; tritonx's generate_stream row shows what the OpenAI layer
adds on top of the same core. ``--python-engine`` adds a generate_stream row for
tritonx's Python HTTP engine (``--http-engine=python``, what a build without the C++
HTTP server serves).

Each client task sends one streaming request at a time (``--concurrency`` tasks,
aiohttp), reads the Server-Sent Events to the end and records the time to the
first token and to the last. Servers run one at a time; the sweep is repeated
``--rounds`` times, alternating servers, and the table shows per-row medians with
ratios against the reference's generate_stream (tokens/s: higher is better;
latencies: lower is better).

    PYTHONPATH=python python benchmarks/bench_openai.py \\
        --reference-cmd ../shared/tools/triton_reference --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from _harness import (
    add_server_arguments,
    free_port,
    launched,
    running,
    write_python_model,
)

MODEL = "tokens"
CONFIG = """
name: "tokens"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [
  { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "stream" data_type: TYPE_BOOL dims: [ 1 ] optional: true },
  { name: "sampling_parameters" data_type: TYPE_STRING dims: [ 1 ] optional: true },
  { name: "exclude_input_in_output" data_type: TYPE_BOOL dims: [ 1 ] optional: true }
]
output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] } ]
"""
MODEL_PY = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _text(text):
    return pb_utils.InferenceResponse(
        [pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_))]
    )


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            params = pb_utils.get_input_tensor_by_name(request, "sampling_parameters")
            settings = json.loads(params.as_numpy()[0]) if params is not None else {}
            count = int(settings.get("max_tokens", 16))
            stream = pb_utils.get_input_tensor_by_name(request, "stream")
            if stream is not None and bool(stream.as_numpy()[0]):
                for i in range(count):
                    sender.send(_text(f" t{i}"))
                sender.send(flags=FINAL)
            else:
                sender.send(_text("".join(f" t{i}" for i in range(count))), flags=FINAL)
        return None
"""


@dataclass
class Sample:
    first_s: float  # time to the first token
    total_s: float  # time to the end of the stream
    tokens: int


@dataclass
class Row:
    server: str
    path: str
    concurrency: int
    tokens_per_sec: float
    requests_per_sec: float
    ttft_p50_ms: float
    latency_p50_ms: float
    latency_p99_ms: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _one(
    session: aiohttp.ClientSession, url: str, body: dict[str, object]
) -> Sample:
    start = time.perf_counter()
    first = 0.0
    tokens = 0
    async with session.post(url, json=body) as reply:
        if reply.status != 200:
            raise RuntimeError(f"{url}: {reply.status} {await reply.text()}")
        async for line in reply.content:
            if not line.startswith(b"data:") or line.strip() == b"data: [DONE]":
                continue
            event = json.loads(line[5:])
            text = event.get("text_output")
            if text is None:  # OpenAI's chunk
                choices = event.get("choices") or [{}]
                text = choices[0].get("text")
            if text:
                tokens += 1
                if not first:
                    first = time.perf_counter() - start
    return Sample(first, time.perf_counter() - start, tokens)


async def _load(
    url: str, body: dict[str, object], concurrency: int, requests: int
) -> tuple[list[Sample], float]:
    samples: list[Sample] = []
    left = requests

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            samples.append(await _one(session, url, body))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _one(session, url, body)  # warm the connection and the model
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return samples, elapsed


def measure(
    server: str, path: str, url: str, body: dict[str, object], args: argparse.Namespace
) -> list[Row]:
    rows = []
    for concurrency in args.concurrency:
        samples, elapsed = asyncio.run(_load(url, body, concurrency, args.requests))
        if any(s.tokens != args.tokens for s in samples):
            raise RuntimeError(f"{server} {path}: a stream lost tokens")
        totals = [s.total_s * 1000 for s in samples]
        rows.append(
            Row(
                server,
                path,
                concurrency,
                sum(s.tokens for s in samples) / elapsed,
                len(samples) / elapsed,
                statistics.median(s.first_s * 1000 for s in samples),
                statistics.median(totals),
                _percentile(totals, 0.99),
            )
        )
    return rows


@contextmanager
def running_openai(cmd: list[str], repo: Path, timeout: float) -> Iterator[int]:
    port = free_port()
    args = [
        *cmd,
        f"--model-repository={repo}",
        f"--openai-port={port}",
        "--backend=vllm",
    ]
    url = f"http://127.0.0.1:{port}/health/ready"
    with launched("openai", args, url, {}, timeout):
        yield port


def one_round(args: argparse.Namespace, repo: Path) -> list[Row]:
    params = json.dumps({"max_tokens": args.tokens})
    generate = {"text_input": "hello", "stream": True, "sampling_parameters": params}
    completion = {
        "model": MODEL,
        "prompt": "hello",
        "max_tokens": args.tokens,
        "stream": True,
    }
    rows: list[Row] = []
    servers = [("tritonx", shlex.split(args.tritonx_cmd))]
    if args.python_engine:
        python = [*shlex.split(args.tritonx_cmd), "--http-engine=python"]
        servers.append(("tritonx-python", python))
    if args.reference_cmd:
        servers.append(("reference", shlex.split(args.reference_cmd)))
    for name, cmd in servers:
        with running(name, cmd, repo, {}, args.timeout) as (http, _grpc):
            url = f"http://127.0.0.1:{http}/v2/models/{MODEL}/generate_stream"
            rows += measure(name, "generate_stream", url, generate, args)
    with running_openai(shlex.split(args.openai_cmd), repo, args.timeout) as port:
        url = f"http://127.0.0.1:{port}/v1/completions"
        rows += measure("tritonx-openai", "/v1/completions", url, completion, args)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser)
    parser.add_argument(
        "--openai-cmd", default=f"{shlex.quote(sys.executable)} -m tritonx.openai"
    )
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8]
    )
    parser.add_argument(
        "--python-engine",
        action="store_true",
        help="also measure tritonx's Python HTTP engine (--http-engine=python)",
    )
    parser.add_argument("--tokens", type=int, default=32, help="tokens per request")
    parser.add_argument("--requests", type=int, default=300, help="per row")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-openai-") as tmp:
        repo = Path(tmp) / "repo"
        write_python_model(repo, MODEL, CONFIG, MODEL_PY)
        rounds = [one_round(args, repo) for _ in range(args.rounds)]
    load_after = os.getloadavg()
    keys = [(r.server, r.path, r.concurrency) for r in rounds[0]]
    medians: dict[tuple[str, str, int], Row] = {}
    for key in keys:
        same = [
            r
            for rows in rounds
            for r in rows
            if (r.server, r.path, r.concurrency) == key
        ]
        medians[key] = Row(
            *key,
            statistics.median(r.tokens_per_sec for r in same),
            statistics.median(r.requests_per_sec for r in same),
            statistics.median(r.ttft_p50_ms for r in same),
            statistics.median(r.latency_p50_ms for r in same),
            statistics.median(r.latency_p99_ms for r in same),
        )
    print(
        f"# {args.tokens} tokens/request, {args.requests} requests/row, medians of "
        f"{args.rounds} rounds; load average {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    print(
        f"{'server':<15} {'path':<16} {'conc':>4} {'tok/s':>9} {'req/s':>7} "
        f"{'ttft p50':>9} {'p50 ms':>8} {'p99 ms':>8}  vs reference generate_stream"
    )
    for (server, path, concurrency), row in medians.items():
        base = medians.get(("reference", "generate_stream", concurrency))
        ratio = (
            f"tok/s x{row.tokens_per_sec / base.tokens_per_sec:.2f}, "
            f"p50 x{row.latency_p50_ms / base.latency_p50_ms:.2f}"
            if base is not None
            else "-"
        )
        print(
            f"{server:<15} {path:<16} {concurrency:>4} {row.tokens_per_sec:>9.0f} "
            f"{row.requests_per_sec:>7.1f} {row.ttft_p50_ms:>9.2f} "
            f"{row.latency_p50_ms:>8.2f} {row.latency_p99_ms:>8.2f}  {ratio}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps([vars(r) for r in medians.values()], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
