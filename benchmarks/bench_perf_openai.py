"""tritonx-perf's OpenAI service kind against perf_analyzer's, on one tritonx-openai.

The server streams ``--tokens`` tokens per /v1/completions request (bench_openai.py's
"tokens" model: no sleep, so the serving path is what is measured). Both tools get
the same payload file, windows and concurrency and take turns (perf_analyzer,
tritonx-perf, ... ``--rounds`` times each); the table gives each tool's median
requests/s and p99, the ratio tritonx-perf / perf_analyzer (both must see the same
server), and each tool's own CPU time per 1000 requests over its whole run
(start-up included: what it takes from the CPUs the server needs).

    PYTHONPATH=python python benchmarks/bench_perf_openai.py \\
        --perf-analyzer ../shared/tools/perf_analyzer --concurrency 1,4 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import write_python_model
from bench_openai import CONFIG, MODEL, MODEL_PY, running_openai

THROUGHPUT = re.compile(r"^    Throughput: ([\d.]+) infer/sec", re.M)
P99 = re.compile(r"p99 latency: (\d+) usec")
COUNT = re.compile(r"Request count: (\d+)")


def measure(command: list[str]) -> tuple[float, float, float]:
    """(requests/s, p99 ms, tool CPU ms per 1000 requests) of the last step."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{result.stdout}\n{result.stderr}")
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    requests = sum(int(n) for n in COUNT.findall(result.stdout))
    return (
        float(THROUGHPUT.findall(result.stdout)[-1]),
        float(P99.findall(result.stdout)[-1]) / 1000,
        cpu_s * 1e6 / max(requests, 1),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--perf-analyzer", required=True)
    parser.add_argument(
        "--openai-cmd", default=f"{shlex.quote(sys.executable)} -m tritonx.openai"
    )
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4]
    )
    parser.add_argument("--tokens", type=int, default=32, help="tokens per request")
    parser.add_argument("--window-ms", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    tools = {
        "perf_analyzer": [args.perf_analyzer, "--async", "-i", "http"],
        "tritonx-perf": [sys.executable, "-m", "tritonx.tools.perf"],
    }
    load_before = os.getloadavg()
    samples: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-perf-openai-") as tmp:
        repo = Path(tmp) / "repo"
        write_python_model(repo, MODEL, CONFIG, MODEL_PY)
        data = Path(tmp) / "payload.json"
        payload = {"model": MODEL, "prompt": "hello", "max_tokens": args.tokens}
        data.write_text(
            json.dumps({"data": [{"payload": [{**payload, "stream": True}]}]})
        )
        with running_openai(shlex.split(args.openai_cmd), repo, args.timeout) as port:
            common = ["-m", MODEL, "--service-kind", "openai",
                      "--endpoint", "v1/completions", "-u", f"127.0.0.1:{port}",
                      "--input-data", str(data), "-p", str(args.window_ms)]  # fmt: skip
            for concurrency in args.concurrency:
                for _ in range(args.rounds):
                    for name, tool in tools.items():
                        run = [*tool, *common, "--concurrency-range", str(concurrency)]
                        samples.setdefault((concurrency, name), []).append(measure(run))
    load_after = os.getloadavg()
    print(
        f"# {args.tokens} streamed tokens/request, {args.window_ms} ms windows, "
        f"medians of {args.rounds} rounds; load average {load_before[0]:.2f} -> "
        f"{load_after[0]:.2f}"
    )
    print(
        "| conc | tool | req/s | p99 ms | tool CPU ms / 1000 req | req/s vs perf_analyzer |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for concurrency in args.concurrency:
        base = statistics.median(s[0] for s in samples[(concurrency, "perf_analyzer")])
        for name in tools:
            rows = samples[(concurrency, name)]
            rate = statistics.median(s[0] for s in rows)
            print(
                f"| {concurrency} | {name} | {rate:.1f} | "
                f"{statistics.median(s[1] for s in rows):.2f} | "
                f"{statistics.median(s[2] for s in rows):.0f} | {rate / base:.3f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
