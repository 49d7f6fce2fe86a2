"""Serving benchmark: perf_analyzer against tritonx and against a reference server.

Both servers load the same repository (benchmarks/models: a Python identity model,
FP32 [16] with batch 1 from the client) and run one at a time, so they never compete
for the CPU. For every protocol (gRPC, HTTP with binary tensors) and concurrency,
perf_analyzer measures throughput and latency percentiles; the table shows the
tritonx/reference ratio per row (throughput: higher is better; p99: lower is better).

    python benchmarks/bench_serving.py --reference-cmd "tritonserver"
    python benchmarks/bench_serving.py --reference-cmd /path/to/triton_reference \\
        --concurrency 1,2,4,8 --measurement-interval 3000 --json results.json

The reference command gets tritonserver's flags appended (--model-repository,
--http-port, --grpc-port, --metrics-port).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from _harness import (
    add_variant_option,
    run_perf_analyzer,
    running,
    server_usage,
    statistics_of,
)

HERE = Path(__file__).resolve().parent
DEFAULT_REPO = HERE / "models"


@dataclass
class Row:
    server: str
    protocol: str
    concurrency: int
    infer_per_sec: float
    p50_us: float
    p99_us: float
    # Server side, over the whole perf_analyzer run (its warm-up and every window):
    # CPU time and context switches of the server's processes per inference.
    cpu_us: float = 0.0
    switches: float = 0.0


MODEL = "identity"


def measure(
    perf_analyzer: str,
    url: str,
    protocol: str,
    concurrency: int,
    interval_ms: int,
) -> tuple[float, float, float]:
    """One perf_analyzer run; returns (infer/s, p50 us, p99 us)."""
    row = run_perf_analyzer(
        perf_analyzer, MODEL, url, protocol, concurrency, interval_ms
    )
    return (
        float(row["Inferences/Second"]),
        float(row["p50 latency"]),
        float(row["p99 latency"]),
    )


def bench_server(
    name: str,
    cmd: Sequence[str],
    args: argparse.Namespace,
    env: dict[str, str],
) -> list[Row]:
    rows: list[Row] = []
    started: list[subprocess.Popen[bytes]] = []
    with running(
        name, cmd, args.model_repository, env, args.start_timeout, started=started
    ) as ports:
        http, grpc = ports
        pid = started[0].pid
        for protocol in args.protocols:
            url = f"127.0.0.1:{grpc if protocol == 'grpc' else http}"
            for concurrency in args.concurrency:
                count = statistics_of(http, MODEL)[0]
                cpu, switches = server_usage(pid)
                rate, p50, p99 = measure(
                    args.perf_analyzer,
                    url,
                    protocol,
                    concurrency,
                    args.measurement_interval,
                )
                count = max(1, statistics_of(http, MODEL)[0] - count)
                cpu_after, switches_after = server_usage(pid)
                row = Row(
                    name,
                    protocol,
                    concurrency,
                    rate,
                    p50,
                    p99,
                    cpu_us=(cpu_after - cpu) / count * 1e6,
                    switches=(switches_after - switches) / count,
                )
                rows.append(row)
                print(
                    f"  {name:9s} {protocol:4s} c={concurrency:<2d} "
                    f"{rate:9.1f} infer/s  p50 {p50:7.0f} us  p99 {p99:7.0f} us  "
                    f"server {row.cpu_us:5.0f} CPU-us {row.switches:4.1f} switches "
                    "per inference",
                    flush=True,
                )
    return rows


def table(rows: list[Row], reference: str) -> str:
    ours = {(r.protocol, r.concurrency): r for r in rows if r.server == "tritonx"}
    theirs = {(r.protocol, r.concurrency): r for r in rows if r.server == reference}
    header = (
        f"{'proto':5s} {'conc':>4s} | {'tritonx inf/s':>13s} {'p50 us':>7s} "
        f"{'p99 us':>7s} | {'ref inf/s':>10s} {'p50 us':>7s} {'p99 us':>7s} | "
        f"{'x inf/s':>7s} {'x p99':>6s}"
    )
    lines = [header, "-" * len(header)]
    for key in sorted(ours.keys() | theirs.keys()):
        a, b = ours.get(key), theirs.get(key)
        left = (
            f"{a.infer_per_sec:13.1f} {a.p50_us:7.0f} {a.p99_us:7.0f}"
            if a
            else f"{'-':>13s} {'-':>7s} {'-':>7s}"
        )
        right = (
            f"{b.infer_per_sec:10.1f} {b.p50_us:7.0f} {b.p99_us:7.0f}"
            if b
            else f"{'-':>10s} {'-':>7s} {'-':>7s}"
        )
        ratio = (
            f"{a.infer_per_sec / b.infer_per_sec:7.2f} {a.p99_us / b.p99_us:6.2f}"
            if a and b and b.infer_per_sec and b.p99_us
            else f"{'-':>7s} {'-':>6s}"
        )
        lines.append(f"{key[0]:5s} {key[1]:4d} | {left} | {right} | {ratio}")
    return "\n".join(lines)


def cost_table(rows: list[Row], reference: str) -> str:
    """Server CPU time and context switches per inference (whole process tree),
    and how much less CPU tritonx spends than the reference ("x less")."""
    ours = {(r.protocol, r.concurrency): r for r in rows if r.server == "tritonx"}
    theirs = {(r.protocol, r.concurrency): r for r in rows if r.server == reference}
    header = (
        f"{'proto':5s} {'conc':>4s} | {'tritonx CPU us':>14s} {'switches':>8s} | "
        f"{'ref CPU us':>10s} {'switches':>8s} | {'x less':>6s}"
    )
    lines = ["server cost per inference", header, "-" * len(header)]
    for key in sorted(ours.keys() | theirs.keys()):
        a, b = ours.get(key), theirs.get(key)
        left = f"{a.cpu_us:14.0f} {a.switches:8.1f}" if a else f"{'-':>14s} {'-':>8s}"
        right = f"{b.cpu_us:10.0f} {b.switches:8.1f}" if b else f"{'-':>10s} {'-':>8s}"
        less = f"{b.cpu_us / a.cpu_us:6.2f}" if a and b and a.cpu_us else f"{'-':>6s}"
        lines.append(f"{key[0]:5s} {key[1]:4d} | {left} | {right} | {less}")
    return "\n".join(lines)


def every_row(rows: list[Row], reference: str) -> str:
    """All servers (variants included), with throughput relative to `reference`
    and to tritonx's gRPC at the same concurrency."""
    ref = {(r.protocol, r.concurrency): r for r in rows if r.server == reference}
    grpc = {
        r.concurrency: r for r in rows if r.server == "tritonx" and r.protocol == "grpc"
    }
    header = (
        f"{'server':10s} {'proto':5s} {'conc':>4s} | {'inf/s':>9s} {'p50 us':>7s} "
        f"{'p99 us':>7s} | {'x ref':>6s} {'x grpc':>6s}"
    )
    lines = [header, "-" * len(header)]
    for r in sorted(rows, key=lambda r: (r.protocol, r.concurrency, r.server)):
        b = ref.get((r.protocol, r.concurrency))
        g = grpc.get(r.concurrency)
        x_ref = f"{r.infer_per_sec / b.infer_per_sec:6.2f}" if b else f"{'-':>6s}"
        x_grpc = f"{r.infer_per_sec / g.infer_per_sec:6.2f}" if g else f"{'-':>6s}"
        lines.append(
            f"{r.server:10s} {r.protocol:5s} {r.concurrency:4d} | "
            f"{r.infer_per_sec:9.1f} {r.p50_us:7.0f} {r.p99_us:7.0f} | {x_ref} {x_grpc}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--reference-cmd",
        default=None,
        help="command that starts the reference server (e.g. tritonserver)",
    )
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
        help="extra environment for tritonx, e.g. TRITONX_SWITCH_INTERVAL=off",
    )
    p.add_argument(
        "--perf-analyzer",
        default=os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer"),
    )
    p.add_argument("--model-repository", type=Path, default=DEFAULT_REPO)
    p.add_argument("--concurrency", default="1,2,4,8")
    p.add_argument("--protocols", default="grpc,http")
    p.add_argument("--measurement-interval", type=int, default=3000, metavar="MS")
    p.add_argument("--start-timeout", type=float, default=120.0)
    p.add_argument("--skip-tritonx", action="store_true")
    add_variant_option(p)
    p.add_argument("--json", type=Path, default=None, help="also write rows here")
    args = p.parse_args(argv)
    if not args.perf_analyzer:
        p.error("perf_analyzer not found: pass --perf-analyzer or set PERF_ANALYZER")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.protocols = [proto.strip() for proto in args.protocols.split(",")]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = dict(kv.split("=", 1) for kv in args.tritonx_env)
    rows: list[Row] = []
    if not args.skip_tritonx:
        print("tritonx:", flush=True)
        rows += bench_server("tritonx", shlex.split(args.tritonx_cmd), args, env)
    for variant in args.variant:
        name, _, extra = variant.partition("=")
        print(f"{name}:", flush=True)
        cmd = shlex.split(args.tritonx_cmd) + shlex.split(extra)
        rows += bench_server(name, cmd, args, env)
    if args.reference_cmd:
        print("reference:", flush=True)
        rows += bench_server("reference", shlex.split(args.reference_cmd), args, {})
    print()
    print(
        f"identity (python backend), FP32 [1,16], batch 1, "
        f"{args.measurement_interval} ms windows, {os.cpu_count()} CPUs"
    )
    print(table(rows, "reference"))
    print()
    print(cost_table(rows, "reference"))
    if args.variant:
        print()
        print(every_row(rows, "reference"))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
