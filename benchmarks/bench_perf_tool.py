"""tritonx-perf against perf_analyzer: the same tritonx server, measured by both.

One tritonx server serves benchmarks/models (Python identity, FP32 [16], batch 1).
For every protocol and load (concurrency, and with --rates request rates: an open
loop both tools must deliver, where throughput must match and latency compares
directly) the two tools take turns (perf_analyzer,
tritonx-perf, perf_analyzer, ... `--repeats` times each) with the same windows and
stability settings; the table gives each tool's median throughput and p99 and the
ratio tritonx-perf / perf_analyzer, plus each tool's own CPU time per 1000 requests
(its client cost: what it takes from the CPUs the server needs).

    flock /work/wt/bench.lock python benchmarks/bench_perf_tool.py \\
        --perf-analyzer shared/tools/perf_analyzer --concurrency 1,4,16 --rates 2000

`--models sleep,sleep_batched` measures instead two Python models whose capacity is
set by the server, not by the CPUs the clients take: each execute sleeps a fixed
time (`--sleep-ms`, default 2) on one instance, unbatched (capacity 1/sleep) or
with dynamic batching up to 4 (4/sleep). There both tools must report the same
throughput and latency whatever their own CPU cost; on the CPU-bound `identity`
model they differ by what each takes from the server's CPUs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from _harness import add_server_arguments, running

HERE = Path(__file__).resolve().parent


@dataclass
class Run:
    tool: str
    model: str
    protocol: str
    load: str  # "c4": concurrency 4; "r2000": 2000 requests/s
    infer_per_sec: float
    p50_us: float
    p99_us: float
    cpu_s: float  # the tool's user + system CPU time
    requests: float  # estimated: throughput x measured seconds

    @property
    def cpu_ms_per_1k(self) -> float:
        return 1e6 * self.cpu_s / max(self.requests, 1.0)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


SLEEP_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: {batch}
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 16 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 16 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{batching}
"""
SLEEP_MODEL = """
import time

import triton_python_backend_utils as pb_utils

SLEEP_S = {sleep_s}


class TritonPythonModel:
    def execute(self, requests):
        # A fixed service time per execute, batched or not: the server's capacity
        # does not depend on how much CPU the load generator leaves it.
        time.sleep(SLEEP_S)
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]
            )
            for r in requests
        ]
"""


def sleep_repository(root: Path, sleep_ms: float) -> Path:
    for name, batch, batching in (
        ("sleep", 0, ""),
        ("sleep_batched", 4, "dynamic_batching { }"),
    ):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(
            SLEEP_CONFIG.format(name=name, batch=batch, batching=batching)
        )
        (root / name / "1" / "model.py").write_text(
            SLEEP_MODEL.format(sleep_s=sleep_ms / 1000)
        )
    return root


def measure(
    tool: str, cmd: list[str], model: str, protocol: str, load: str, interval_ms: int
) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.csv"
        before = _children_cpu()
        result = subprocess.run(
            [*cmd, "-f", str(report)], capture_output=True, text=True, timeout=900
        )
        cpu = _children_cpu() - before
        if result.returncode != 0 or not report.exists():
            raise RuntimeError(f"{tool} failed:\n{result.stdout}{result.stderr}")
        with report.open() as handle:
            row = next(csv.DictReader(handle))
    rate = float(row["Inferences/Second"])
    # Both tools report the last three windows (each 1.2 x the interval, as both
    # sleep); the run lasted at least that long.
    return Run(
        tool,
        model,
        protocol,
        load,
        rate,
        float(row["p50 latency"]),
        float(row["p99 latency"]),
        cpu,
        rate * 3 * 1.2 * interval_ms / 1000,
    )


def command(
    tool: str, args: argparse.Namespace, model: str, url: str, protocol: str, load: str
) -> list[str]:
    flag = "--concurrency-range" if load[0] == "c" else "--request-rate-range"
    common = [
        "-m",
        model,
        "-u",
        url,
        "-i",
        protocol,
        "-b",
        "1",
        flag,
        load[1:],
        "--measurement-interval",
        str(args.measurement_interval),
        "--stability-percentage",
        "100",
        "--max-trials",
        "10",
    ]
    pin = ["taskset", "-c", args.client_cpus] if args.client_cpus else []
    if tool == "perf_analyzer":
        return [*pin, args.perf_analyzer, *common]
    return [*pin, *shlex.split(args.tritonx_perf_cmd), *common]


def table(runs: list[Run]) -> str:
    lines = [
        "| model | proto | load | perf_analyzer infer/s | tritonx-perf infer/s | ratio "
        "| p50 ratio | p99 PA / tx-perf (µs) | p99 ratio "
        "| client CPU ms/1k req PA / tx-perf |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    keys = sorted(
        {(r.model, r.protocol, r.load) for r in runs},
        key=lambda k: (k[0], k[1], k[2][0], int(k[2][1:])),
    )
    for model, protocol, load in keys:

        def med(
            tool: str, attr: str, m: str = model, p: str = protocol, x: str = load
        ) -> float:
            values = [
                getattr(r, attr)
                for r in runs
                if r.tool == tool and r.model == m and r.protocol == p and r.load == x
            ]
            return statistics.median(values)

        pa_t = med("perf_analyzer", "infer_per_sec")
        tx_t = med("tritonx-perf", "infer_per_sec")
        pa_p, tx_p = med("perf_analyzer", "p99_us"), med("tritonx-perf", "p99_us")
        pa_50, tx_50 = med("perf_analyzer", "p50_us"), med("tritonx-perf", "p50_us")
        pa_c = med("perf_analyzer", "cpu_ms_per_1k")
        tx_c = med("tritonx-perf", "cpu_ms_per_1k")
        lines.append(
            f"| {model} | {protocol} | {load} | {pa_t:.0f} | {tx_t:.0f} | {tx_t / pa_t:.3f} "
            f"| {tx_50 / pa_50:.3f} | {pa_p:.0f} / {tx_p:.0f} | {tx_p / pa_p:.3f} | {pa_c:.0f} / {tx_c:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(p)
    p.add_argument(
        "--tritonx-perf-cmd",
        default=f"{shlex.quote(sys.executable)} -m tritonx.tools.perf",
    )
    p.add_argument("--model-repository", type=Path, default=HERE / "models")
    p.add_argument(
        "--models",
        default="identity",
        help="models to measure; 'sleep' and 'sleep_batched' are generated "
        "(server-bound, see above) in a repository of their own",
    )
    p.add_argument("--sleep-ms", type=float, default=2.0)
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument(
        "--rates",
        default="",
        help="also request rates (requests/s, comma-separated): an open loop both "
        "tools must deliver, so throughput matches and latency is comparable",
    )
    p.add_argument("--protocols", default="grpc,http")
    p.add_argument("--measurement-interval", type=int, default=2000, metavar="MS")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--start-timeout", type=float, default=120.0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--server-cpus",
        default="",
        help="taskset CPU list for the server (e.g. 0); with --client-cpus the tool "
        "and the server stop competing for the same CPUs",
    )
    p.add_argument("--client-cpus", default="", help="taskset CPU list for the tools")
    args = p.parse_args(argv)
    if not args.perf_analyzer:
        p.error("perf_analyzer not found: pass --perf-analyzer or set PERF_ANALYZER")
    args.loads = [f"c{int(c)}" for c in args.concurrency.split(",") if c] + [
        f"r{int(r)}" for r in args.rates.split(",") if r
    ]
    args.protocols = [x.strip() for x in args.protocols.split(",")]
    args.models = [x.strip() for x in args.models.split(",") if x.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    runs: list[Run] = []
    cmd = shlex.split(args.tritonx_cmd)
    if args.server_cpus:
        cmd = ["taskset", "-c", args.server_cpus, *cmd]
    sleepy = any(m.startswith("sleep") for m in args.models)
    with tempfile.TemporaryDirectory() as tmp:
        repo = (
            sleep_repository(Path(tmp), args.sleep_ms)
            if sleepy
            else args.model_repository
        )
        with running("tritonx", cmd, repo, {}, args.start_timeout) as (http, grpc):
            for model, protocol, load in (
                (m, p, x)
                for m in args.models
                for p in args.protocols
                for x in args.loads
            ):
                url = f"127.0.0.1:{grpc if protocol == 'grpc' else http}"
                for _ in range(args.repeats):
                    for tool in ("perf_analyzer", "tritonx-perf"):
                        run = measure(
                            tool,
                            command(tool, args, model, url, protocol, load),
                            model,
                            protocol,
                            load,
                            args.measurement_interval,
                        )
                        runs.append(run)
                        print(
                            f"{tool:14s} {model:13s} {protocol:4s} {load:6s} "
                            f"{run.infer_per_sec:9.1f} infer/s  p99 {run.p99_us:7.0f} us  "
                            f"cpu {run.cpu_ms_per_1k:5.0f} ms/1k",
                            flush=True,
                        )
    print()
    print(
        f"{', '.join(args.models)} (python backend"
        + (f"; sleep {args.sleep_ms:g} ms per execute" if sleepy else "")
        + "), FP32 [16], batch 1, one tritonx server, "
        f"{args.measurement_interval} ms windows, medians of {args.repeats} runs "
        f"per tool, {os.cpu_count()} CPUs, server CPUs {args.server_cpus or 'all'}, "
        f"tool CPUs {args.client_cpus or 'all'}, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(table(runs))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
