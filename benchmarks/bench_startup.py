"""Start-up: seconds from launch to /v2/health/ready, tritonx against a reference
Triton, on two repositories: the bundled example's python models (add_sub and
identity of model_repository/; the reference has no ONNX Runtime) and one python
model with ``--instances`` instances whose ``initialize`` sleeps ``--init-seconds``
(a stand-in for loading weights: instances that are created one after another
cost their sum, created side by side about one), and ``--many`` python identity
models (a repository of many small models: Triton starts a stub process for each,
tritonx runs them in process unless a model asks for EXECUTION_MODE process).
Beside the seconds, the memory of the server and its stub processes at ready
(proportional set size, so pages the processes share count once).

Servers start one at a time, alternating, ``--rounds`` times; the table shows the
median per row and the tritonx/reference ratio (lower is better).

    PYTHONPATH=python python benchmarks/bench_startup.py \\
        --reference-cmd ../shared/tools/triton_reference --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _harness import (
    IDENTITY_MODEL,
    SLOW_INIT_MODEL,
    add_server_arguments,
    running,
    servers_to_compare,
    slow_init_config,
    write_python_model,
)

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "model_repository"
EXAMPLE_MODELS = ("add_sub", "identity")


def identity_config(name: str) -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
"""


def tree_pss_mib(pid: int) -> float:
    """PSS of a process and its descendants, MiB."""
    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_full_info().pss
    return total / 2**20


def time_to_ready(name: str, cmd: list[str], repo: Path) -> tuple[float, float]:
    """Seconds to ready, and the memory (MiB) at ready."""
    started: list[subprocess.Popen[bytes]] = []
    start = time.perf_counter()
    with running(name, cmd, repo, {}, timeout=300, poll_s=0.02, started=started):
        seconds = time.perf_counter() - start
        return seconds, tree_pss_mib(started[0].pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--init-seconds", type=float, default=2.0)
    parser.add_argument("--many", type=int, default=32, help="identity models")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    servers = servers_to_compare(args)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        slow = Path(tmp) / "repo"
        write_python_model(
            slow,
            "slow_init",
            slow_init_config("slow_init", args.instances),
            SLOW_INIT_MODEL.format(seconds=args.init_seconds),
        )
        example = Path(tmp) / "example"
        for name in EXAMPLE_MODELS:
            shutil.copytree(EXAMPLE / name, example / name)
        many = Path(tmp) / "many"
        for index in range(args.many):
            name = f"identity_{index}"
            write_python_model(many, name, identity_config(name), IDENTITY_MODEL)
        repos = {
            "example": example,
            f"{args.instances}x{args.init_seconds:g}s init": slow,
            f"{args.many} models": many,
        }
        times: dict[tuple[str, str], list[float]] = {}
        memory: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for repo_name, repo in repos.items():
                for name, cmd in servers:
                    seconds, mib = time_to_ready(name, cmd, repo)
                    times.setdefault((repo_name, name), []).append(seconds)
                    memory.setdefault((repo_name, name), []).append(mib)
    load_after = os.getloadavg()
    print(
        f"# seconds to ready, medians of {args.rounds} rounds; load average "
        f"{load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    print(
        f"{'repository':<16} {'server':<10} {'median s':>9} {'min s':>7} {'vs ref':>7}"
        f" {'MiB':>7} {'vs ref':>7}"
    )
    for (repo_name, name), values in times.items():
        median = statistics.median(values)
        mib = statistics.median(memory[(repo_name, name)])
        base = times.get((repo_name, "reference"))
        base_mib = memory.get((repo_name, "reference"))
        ratio = f"x{median / statistics.median(base):.2f}" if base else "-"
        mib_ratio = f"x{mib / statistics.median(base_mib):.2f}" if base_mib else "-"
        print(
            f"{repo_name:<16} {name:<10} {median:>9.2f} {min(values):>7.2f} "
            f"{ratio:>7} {mib:>7.0f} {mib_ratio:>7}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
