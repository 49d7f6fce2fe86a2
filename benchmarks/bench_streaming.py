"""Streaming benchmark: perf_analyzer --streaming against tritonx and a reference Triton.

The model (benchmarks/models/repeat_identity) is a decoupled Python identity that
answers each request with N copies of its FP32 [16] input, FINAL riding on the last
response. For each N and concurrency, perf_analyzer drives gRPC ModelStreamInfer and
reports responses/s and the latency of a request's first response (perf_analyzer's
measure for decoupled models). Servers run one at a time, so they never compete for
the CPU; the whole sweep is repeated --rounds times, alternating servers, and the
table shows per-row medians with tritonx/reference ratios (responses/s: higher is
better; p99: lower is better).

    python benchmarks/bench_streaming.py --reference-cmd /path/to/triton_reference \\
        --concurrency 1,4 --repeats 1,16 --rounds 3 --json results.json

`--variant NAME=ARGS` adds tritonx run with extra arguments (e.g. the model in a stub
process: 'process=--backend-config=python,execution-mode=process') to every round,
and a second table with every server's medians against the reference's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from _harness import add_variant_option, run_perf_analyzer, running

HERE = Path(__file__).resolve().parent
MODEL = "repeat_identity"


@dataclass
class Row:
    server: str
    repeats: int  # responses per request
    concurrency: int
    requests_per_sec: float
    responses_per_sec: float
    p50_us: float
    p99_us: float


def measure(
    args: argparse.Namespace, server: str, grpc_port: int, tmp: Path
) -> list[Row]:
    rows = []
    for repeats in args.repeats:
        data = tmp / f"input-{repeats}.json"
        data.write_text(json.dumps({"data": [{"INPUT0": [0.5] * 16, "N": [repeats]}]}))
        for concurrency in args.concurrency:
            row = run_perf_analyzer(
                args.perf_analyzer,
                MODEL,
                f"127.0.0.1:{grpc_port}",
                "grpc",
                concurrency,
                args.measurement_interval,
                extra=["--streaming", "--input-data", str(data)],
            )
            result = Row(
                server,
                repeats,
                concurrency,
                float(row["Inferences/Second"]),
                float(row["Response Throughput"]),
                float(row["p50 latency"]),
                float(row["p99 latency"]),
            )
            rows.append(result)
            print(
                f"  {server:9s} N={repeats:<3d} c={concurrency:<2d} "
                f"{result.responses_per_sec:9.1f} resp/s "
                f"({result.requests_per_sec:8.1f} req/s)  "
                f"p50 {result.p50_us:7.0f} us  p99 {result.p99_us:7.0f} us",
                flush=True,
            )
    return rows


def medians(rows: list[Row]) -> dict[tuple[str, int, int], Row]:
    groups: dict[tuple[str, int, int], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.server, r.repeats, r.concurrency), []).append(r)
    return {
        key: Row(
            key[0],
            key[1],
            key[2],
            statistics.median(r.requests_per_sec for r in group),
            statistics.median(r.responses_per_sec for r in group),
            statistics.median(r.p50_us for r in group),
            statistics.median(r.p99_us for r in group),
        )
        for key, group in groups.items()
    }


def table(rows: list[Row]) -> str:
    med = medians(rows)
    header = (
        f"{'N':>3s} {'conc':>4s} | {'tritonx resp/s':>14s} {'p99 us':>7s} | "
        f"{'triton resp/s':>13s} {'p99 us':>7s} | {'x resp/s':>8s} {'x p99':>6s}"
    )
    lines = [header, "-" * len(header)]
    for repeats, concurrency in sorted({(k[1], k[2]) for k in med}):
        a = med.get(("tritonx", repeats, concurrency))
        b = med.get(("reference", repeats, concurrency))
        left = (
            f"{a.responses_per_sec:14.0f} {a.p99_us:7.0f}"
            if a
            else f"{'-':>14s} {'-':>7s}"
        )
        right = (
            f"{b.responses_per_sec:13.0f} {b.p99_us:7.0f}"
            if b
            else f"{'-':>13s} {'-':>7s}"
        )
        ratio = (
            f"{a.responses_per_sec / b.responses_per_sec:8.2f} "
            f"{a.p99_us / b.p99_us:6.2f}"
            if a and b and b.responses_per_sec and b.p99_us
            else f"{'-':>8s} {'-':>6s}"
        )
        lines.append(f"{repeats:3d} {concurrency:4d} | {left} | {right} | {ratio}")
    return "\n".join(lines)


def every_row(rows: list[Row]) -> str:
    """Every server's medians (variants included), responses/s x the reference."""
    med = medians(rows)
    header = (
        f"{'server':10s} {'N':>3s} {'conc':>4s} | {'resp/s':>9s} {'p50 us':>7s} "
        f"{'p99 us':>7s} | {'x ref':>6s}"
    )
    lines = [header, "-" * len(header)]
    for key in sorted(med, key=lambda k: (k[1], k[2], k[0])):
        r = med[key]
        b = med.get(("reference", key[1], key[2]))
        x_ref = (
            f"{r.responses_per_sec / b.responses_per_sec:6.2f}"
            if b and b.responses_per_sec
            else f"{'-':>6s}"
        )
        lines.append(
            f"{r.server:10s} {r.repeats:3d} {r.concurrency:4d} | "
            f"{r.responses_per_sec:9.0f} {r.p50_us:7.0f} {r.p99_us:7.0f} | {x_ref}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference-cmd", default=None, help="starts the reference Triton")
    p.add_argument(
        "--tritonx-cmd",
        default=f"{shlex.quote(sys.executable)} -m tritonx",
        help="command that starts tritonx (default: this python -m tritonx)",
    )
    p.add_argument(
        "--tritonx-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for tritonx",
    )
    p.add_argument(
        "--perf-analyzer",
        default=os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer"),
    )
    p.add_argument("--model-repository", type=Path, default=HERE / "models")
    p.add_argument("--concurrency", default="1,4")
    p.add_argument("--repeats", default="1,16", help="responses per request (N)")
    p.add_argument("--rounds", type=int, default=3, help="sweeps per server (medians)")
    p.add_argument("--measurement-interval", type=int, default=2000, metavar="MS")
    p.add_argument("--start-timeout", type=float, default=120.0)
    p.add_argument("--skip-tritonx", action="store_true")
    add_variant_option(p)
    p.add_argument("--json", type=Path, default=None, help="also write rows here")
    args = p.parse_args(argv)
    if not args.perf_analyzer:
        p.error("perf_analyzer not found: pass --perf-analyzer or set PERF_ANALYZER")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.repeats = [int(n) for n in args.repeats.split(",")]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = dict(kv.split("=", 1) for kv in args.tritonx_env)
    servers: list[tuple[str, list[str], dict[str, str]]] = []
    if not args.skip_tritonx:
        servers.append(("tritonx", shlex.split(args.tritonx_cmd), env))
    for variant in args.variant:
        name, _, extra = variant.partition("=")
        servers.append((name, shlex.split(args.tritonx_cmd) + shlex.split(extra), env))
    if args.reference_cmd:
        servers.append(("reference", shlex.split(args.reference_cmd), {}))
    # Only the benchmark model, on both servers.
    load = ["--model-control-mode=explicit", f"--load-model={MODEL}"]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for name, cmd, server_env in servers:
                print(f"round {round_index + 1}, {name}:", flush=True)
                with running(
                    name,
                    cmd,
                    args.model_repository,
                    server_env,
                    args.start_timeout,
                    load,
                ) as (_, grpc):
                    rows += measure(args, name, grpc, Path(tmp))
    print()
    print(
        f"{MODEL} (decoupled python backend), gRPC streaming, FP32 [1,16], "
        f"medians of {args.rounds} rounds, {args.measurement_interval} ms windows, "
        f"{os.cpu_count()} CPUs; p99 = latency of a request's first response"
    )
    print(table(rows))
    if args.variant:
        print()
        print(every_row(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
