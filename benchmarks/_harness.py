"""Pieces the perf_analyzer benchmarks share: start a server on free ports (one at a
time, so servers never compete for the CPU) and run perf_analyzer, reading its CSV.

Used by bench_serving.py and bench_streaming.py (run as scripts from benchmarks/).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A Python model that answers OUTPUT0 = INPUT0 (any datatype and shape).
IDENTITY_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0",
                 pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""


# A python model whose instances take ``seconds`` to initialize (a stand-in for
# loading weights), then answer OUTPUT0 = INPUT0: SLOW_INIT_MODEL.format(seconds=...)
# with slow_init_config(name, count).
SLOW_INIT_MODEL = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        time.sleep({seconds})

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(
                "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""


def slow_init_config(name: str, count: int) -> str:
    """SLOW_INIT_MODEL's config: FP32 [4] in and out, ``count`` CPU instances."""
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ count: {count} kind: KIND_CPU }} ]
"""


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every side-by-side benchmark takes: how to start each server and
    where perf_analyzer is."""
    parser.add_argument(
        "--reference-cmd", default=None, help="starts the reference Triton"
    )
    parser.add_argument(
        "--tritonx-cmd",
        default=f"{shlex.quote(sys.executable)} -m tritonx",
        help="command that starts tritonx (default: this python -m tritonx)",
    )
    parser.add_argument(
        "--perf-analyzer",
        default=os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer"),
    )


def servers_to_compare(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, command) of tritonx and, with --reference-cmd, of the reference."""
    servers = [("tritonx", shlex.split(args.tritonx_cmd))]
    if args.reference_cmd:
        servers.append(("reference", shlex.split(args.reference_cmd)))
    return servers


def write_python_model(repo: Path, name: str, config: str, model_py: str) -> None:
    """A one-version Python model in ``repo``."""
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    (repo / name / "1" / "model.py").write_text(model_py)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def launched(
    name: str,
    args: Sequence[str],
    ready_url: str,
    env: dict[str, str],
    timeout: float,
    poll_s: float = 0.2,
    started: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[None]:
    """Run ``args`` (output to a temporary log), wait until ``ready_url`` answers
    200 (asked every ``poll_s``), stop it on exit. ``started`` receives the process
    (for benchmarks that read its memory)."""
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
        prefix=f"bench-{name}-", suffix=".log", delete=False
    )
    process = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
    )
    if started is not None:
        started.append(process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited early; log: {log.name}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready in {timeout}s; log: {log.name}")
            time.sleep(poll_s)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextmanager
def running(
    name: str,
    cmd: Sequence[str],
    repo: Path | str,
    env: dict[str, str],
    timeout: float,
    extra_args: Sequence[str] = (),
    poll_s: float = 0.2,
    started: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[tuple[int, int]]:
    """Start a server with free ports, wait for /v2/health/ready (asked every
    ``poll_s``), stop on exit. Yields (http port, grpc port)."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    args = [
        *cmd,
        f"--model-repository={repo}",
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
        *extra_args,
    ]
    url = f"http://127.0.0.1:{http}/v2/health/ready"
    with launched(name, args, url, env, timeout, poll_s, started):
        yield http, grpc


def run_perf_analyzer(
    perf_analyzer: str,
    model: str,
    url: str,
    protocol: str,
    concurrency: int,
    interval_ms: int,
    extra: Sequence[str] = (),
) -> dict[str, str]:
    """One perf_analyzer run at one concurrency; returns its CSV report row."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.csv"
        cmd = [
            perf_analyzer,
            "-m",
            model,
            "-u",
            url,
            "-i",
            protocol,
            "-b",
            "1",
            "--concurrency-range",
            str(concurrency),
            "--measurement-interval",
            str(interval_ms),
            # Noisy shared machines rarely meet the default 10 % stability band;
            # the last three windows are averaged either way.
            "--stability-percentage",
            "100",
            "--max-trials",
            "10",
            "-f",
            str(report),
            *extra,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not report.exists():
            raise RuntimeError(f"perf_analyzer failed:\n{result.stdout}{result.stderr}")
        with report.open() as handle:
            return dict(next(csv.DictReader(handle)))


def served_rate(
    model: Any, inputs: Sequence[Any], clients: int, seconds: float, warmup: float
) -> tuple[float, float]:
    """Inferences/s and mean batch size of a core model under closed-loop load from
    `clients` C++ threads in process (``_native.generate_load``), after a warm-up."""
    from tritonx import _native

    _native.generate_load(model, inputs, clients, warmup)
    before = model.statistics()
    result = _native.generate_load(model, inputs, clients, seconds)
    after = model.statistics()
    count = after["inference_count"] - before["inference_count"]
    execs = max(1, after["execution_count"] - before["execution_count"])
    return count / float(result["seconds"]), count / execs


def add_variant_option(parser: argparse.ArgumentParser) -> None:
    """--variant NAME=ARGS (repeatable): tritonx again with extra arguments, as rows
    named NAME."""
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="also run tritonx with these extra arguments, as rows named NAME "
        "(repeatable), e.g. 'process=--backend-config=python,execution-mode=process'",
    )


def server_usage(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and context switches so far of the server ``pid``
    and its child processes (the reference's Python stubs, tritonx's stub
    processes). Switches are summed over every thread: /proc/PID/status alone
    counts only the main thread's, and psutil reads only that file."""
    import psutil

    root = psutil.Process(pid)
    cpu, switches = 0.0, 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            cpu += times.user + times.system
            for task in Path(f"/proc/{process.pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    for line in (task / "status").read_text().splitlines():
                        if "ctxt_switches:" in line:  # voluntary and not
                            switches += int(line.split()[-1])
    return cpu, switches


def statistics_of(http_port: int, model: str) -> tuple[int, int]:
    """(inference count, execution count) of ``model``, every version summed, from
    the statistics extension (tritonx and Triton alike)."""
    url = f"http://127.0.0.1:{http_port}/v2/models/{model}/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        stats = json.load(response)["model_stats"]
    return (
        sum(int(entry["inference_count"]) for entry in stats),
        sum(int(entry["execution_count"]) for entry in stats),
    )
