"""Driving a perf command (tritonx-perf or perf_analyzer) and reading its CSV.

The analyzer never generates load itself: like Model Analyzer with perf_analyzer,
it runs the perf command once per concurrency value with ``-f results.csv`` and
reads perf_analyzer's CSV layout (latencies in microseconds). A run that finds no
stable measurement is retried with longer windows.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tritonx.tools.analyze.errors import AnalyzeError
from tritonx.tools.analyze.server import die_with_parent

# perf_analyzer's CSV columns that add up to the client's average latency (the CSV
# has no average column; Model Analyzer sums the same parts).
_LATENCY_PARTS = (
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
)

# Measurement settings when --perf-args is not given: short time windows, a loose
# stability band (a shared machine rarely meets perf_analyzer's 10 %).
DEFAULT_PERF_ARGS = (
    "--measurement-interval",
    "1000",
    "--stability-percentage",
    "25",
    "--max-trials",
    "6",
)


@dataclass
class PerfResult:
    """One perf command run at one concurrency: client-side numbers in ms."""

    throughput: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    queue_ms: float
    compute_ms: float


class PerfRunError(Exception):
    """The perf command ran but produced no measurement (the reason is its output)."""


def default_perf_command() -> list[str] | None:
    """The bundled tritonx-perf, run by this interpreter (so the same tritonx as
    the analyzer's); None when this tritonx lacks it."""
    if importlib.util.find_spec("tritonx.tools.perf") is not None:
        return [sys.executable, "-m", "tritonx.tools.perf"]
    found = shutil.which("tritonx-perf")
    return [found] if found else None


def resolve_perf_command(text: str | None) -> list[str]:
    """The perf command as argv, checked to exist; AnalyzeError otherwise."""
    if text is None:
        command = default_perf_command()
        if command is None:
            raise AnalyzeError(
                "no perf command: this tritonx has no tritonx-perf; pass "
                "--perf-command PATH (e.g. perf_analyzer)"
            )
        return command
    argv = shlex.split(text)
    if not argv:
        raise AnalyzeError("--perf-command is empty")
    exe = argv[0]
    path = shutil.which(exe) if os.sep not in exe else exe
    if path is None or not os.access(path, os.X_OK) or Path(path).is_dir():
        raise AnalyzeError(f"perf command not found or not executable: {exe}")
    return [path, *argv[1:]]


def _widened(args: list[str]) -> list[str]:
    """The same flags with a measurement window twice as long."""
    out = list(args)
    for flag, default in (
        ("--measurement-request-count", None),
        ("--measurement-interval", "5000"),
    ):
        for i, item in enumerate(out[:-1]):
            if item == flag:
                out[i + 1] = str(int(float(out[i + 1]) * 2))
                return out
        if default is not None and "count_windows" not in out:
            return [*out, flag, str(int(default) * 2)]
    return out


def _tail(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower() or "failed" in line.lower():
            return line
    return lines[-1] if lines else "no output"


def parse_csv(path: Path, concurrency: int) -> PerfResult:
    """The row for `concurrency` of a perf_analyzer-layout CSV file."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        try:
            if int(float(row.get("Concurrency", "nan"))) != concurrency:
                continue
        except ValueError:
            continue

        def us(name: str, row: dict[str, str] = row) -> float:
            return float(row[name]) / 1000.0

        try:
            avg = (
                us("Avg latency")
                if row.get("Avg latency")
                else sum(us(part) for part in _LATENCY_PARTS if row.get(part))
            )
            return PerfResult(
                throughput=float(row["Inferences/Second"]),
                p50_ms=us("p50 latency"),
                p90_ms=us("p90 latency"),
                p95_ms=us("p95 latency"),
                p99_ms=us("p99 latency"),
                avg_ms=avg,
                queue_ms=us("Server Queue") if row.get("Server Queue") else 0.0,
                compute_ms=(
                    us("Server Compute Infer")
                    if row.get("Server Compute Infer")
                    else 0.0
                ),
            )
        except (KeyError, ValueError) as exc:
            raise PerfRunError(f"unreadable perf CSV {path}: {exc}") from exc
    raise PerfRunError(f"perf CSV {path} has no row for concurrency {concurrency}")


class PerfRunner:
    """Runs the perf command for one model name against one server URL."""

    def __init__(
        self,
        command: list[str],
        url: str,
        protocol: str,
        extra_args: list[str],
        timeout_s: float,
    ) -> None:
        self.command = command
        self.url = url
        self.protocol = protocol
        self.extra_args = extra_args
        self.timeout_s = timeout_s
        self.process: subprocess.Popen[str] | None = None

    def argv(
        self, model: str, concurrency: int, csv_path: Path, args: list[str]
    ) -> list[str]:
        return [
            *self.command,
            "-m",
            model,
            "-u",
            self.url,
            "-i",
            self.protocol,
            "--concurrency-range",
            str(concurrency),
            "-f",
            str(csv_path),
            *args,
        ]

    def run(self, model: str, concurrency: int) -> PerfResult:
        """One measurement; a run without a stable window is retried twice, each
        time with a window twice as long."""
        args = self.extra_args
        for attempt in range(3):
            try:
                return self._run_once(model, concurrency, args)
            except PerfRunError as exc:
                if "stable" not in str(exc).lower() or attempt == 2:
                    raise
                args = _widened(args)
        raise AssertionError("unreachable")

    def _run_once(self, model: str, concurrency: int, args: list[str]) -> PerfResult:
        with tempfile.TemporaryDirectory(prefix="tritonx-analyze-") as tmp:
            csv_path = Path(tmp) / "results.csv"
            argv = self.argv(model, concurrency, csv_path, args)
            try:
                self.process = subprocess.Popen(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            except OSError as exc:
                raise AnalyzeError(
                    f"cannot run perf command {argv[0]}: {exc.strerror}"
                ) from exc
            try:
                output, _ = self.process.communicate(timeout=self.timeout_s)
            except subprocess.TimeoutExpired as exc:
                self.kill()
                raise PerfRunError(
                    f"perf command ran past {self.timeout_s:.0f}s"
                ) from exc
            finally:
                rc = self.process.wait() if self.process else -1
                self.process = None
            if rc != 0 or not csv_path.is_file():
                raise PerfRunError(_tail(output))
            return parse_csv(csv_path, concurrency)

    def kill(self) -> None:
        """Ends a run in flight (an interrupted analysis)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
