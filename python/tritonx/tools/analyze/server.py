"""The server the candidates are loaded into, and what it uses while measured.

`LocalServer` starts one tritonx server in explicit mode on free ports (port 0,
read back from its log) over the work repository, and keeps it for the whole
search: candidates are loaded and unloaded through the repository API.
`RemoteServer` is a server someone else runs (``--server-url``): candidates reach
it as load requests with a config override, and its resources are not sampled.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tritonx.tools.analyze.errors import AnalyzeError
from tritonx.tools.perf.metrics import MetricsCollector, StepMetrics

_PORT_LINES = {
    "http": re.compile(r"Started HTTPService at [^:\s]+:(\d+)"),
    "grpc": re.compile(r"Started GRPCInferenceService at [^:\s]+:(\d+)"),
}


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the analyzer dies, even by SIGKILL
    (Linux), so an interrupted job leaves no server or load generator behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


class LoadError(Exception):
    """The server refused a candidate (its message)."""


class HttpControl:
    """The few KServe/Triton HTTP routes the analyzer needs."""

    def __init__(self, http_url: str) -> None:
        self.base = http_url if "://" in http_url else f"http://{http_url}"

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout=600.0
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else {}
        except ValueError:
            return status, {"error": raw.decode(errors="replace")}

    def ready(self) -> bool:
        try:
            status, _ = self.request("GET", "/v2/health/ready", timeout=2.0)
        except OSError:
            return False
        return status == 200

    def load(self, name: str, config_json: str | None = None) -> None:
        body = {"parameters": {"config": config_json}} if config_json else {}
        status, doc = self.request("POST", f"/v2/repository/models/{name}/load", body)
        if status != 200:
            raise LoadError(str(doc.get("error", f"HTTP {status}")))

    def unload(self, name: str) -> None:
        self.request("POST", f"/v2/repository/models/{name}/unload", {})

    def config(self, name: str) -> dict[str, Any]:
        status, doc = self.request("GET", f"/v2/models/{name}/config")
        if status != 200:
            raise LoadError(str(doc.get("error", f"HTTP {status}")))
        return dict(doc)

    def index(self) -> list[dict[str, Any]]:
        status, doc = self.request("POST", "/v2/repository/index", {})
        if status != 200:
            raise AnalyzeError(f"the server's repository index failed: {doc}")
        return list(doc)


class LocalServer:
    """One tritonx server process for the whole search."""

    def __init__(
        self,
        command: list[str] | None,
        repository: Path,
        extra_args: list[str],
        log_path: Path,
        protocol: str,
        timeout_s: float = 120.0,
    ) -> None:
        launcher = command or [sys.executable, "-m", "tritonx"]
        self.argv = [
            *launcher,
            f"--model-repository={repository}",
            "--model-control-mode=explicit",
            "--http-port=0",
            "--grpc-port=0",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--allow-metrics=false",
            *extra_args,
        ]
        self.log_path = log_path
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.control: HttpControl | None = None

    def start(self) -> None:
        log = self.log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            raise AnalyzeError(
                f"cannot start the server {self.argv[0]}: {exc.strerror}"
            ) from exc
        finally:
            log.close()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            for name, pattern in _PORT_LINES.items():
                match = pattern.search(text)
                if match:
                    self.ports[name] = int(match.group(1))
            if {"http", self.protocol} <= self.ports.keys():
                self.control = HttpControl(f"127.0.0.1:{self.ports['http']}")
                if self.control.ready():
                    return
            if self.process.poll() is not None:
                raise AnalyzeError(
                    f"the server exited while starting: {_last_error(text)} "
                    f"(log: {self.log_path})"
                )
            time.sleep(0.1)
        self.stop()
        raise AnalyzeError(
            f"the server did not start in {self.timeout_s:.0f}s (log: {self.log_path})"
        )

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.ports[self.protocol]}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _last_error(log_text: str) -> str:
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("E") or "error" in line.lower():
            return line[-300:]
    return lines[-1][-300:] if lines else "no output"


@dataclass
class RemoteServer:
    """A server the user runs; reached over HTTP for control."""

    http_url: str
    perf_url: str

    def connect(self) -> HttpControl:
        control = HttpControl(self.http_url)
        try:
            control.request("GET", "/v2/health/live", timeout=5.0)
        except OSError as exc:
            reason = getattr(exc, "reason", exc)
            raise AnalyzeError(
                f"server {self.http_url} is unreachable: {reason}"
            ) from exc
        return control


@dataclass
class Usage:
    """What the server used during one perf run."""

    cpu_percent: float | None = None  # mean over the run; 100 = one core
    rss_mb: float | None = None  # peak, the server and its child processes
    gpu_memory_mb: float | None = None  # peak, the server's processes on all GPUs
    gpu_util_percent: float | None = None  # mean device utilisation


class _Nvml:
    """GPU memory and utilisation through NVML, when the library is there."""

    def __init__(self) -> None:
        self.lib: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self.lib = pynvml if count else None
        except Exception:  # no library, no driver, no device: no GPU numbers
            self.lib = None

    def device_count(self) -> int:
        return len(self.handles) if self.lib else 0

    def sample(self, pids: set[int]) -> tuple[float, float] | None:
        if not self.lib:
            return None
        memory = 0.0
        utils: list[float] = []
        for handle in self.handles:
            try:
                procs = self.lib.nvmlDeviceGetComputeRunningProcesses(handle)
                memory += sum(
                    (p.usedGpuMemory or 0) for p in procs if p.pid in pids
                ) / (1 << 20)
                utils.append(float(self.lib.nvmlDeviceGetUtilizationRates(handle).gpu))
            except Exception:  # a device that answers nothing counts as idle
                continue
        return memory, sum(utils) / len(utils) if utils else 0.0


NVML = _Nvml()


class UsageSampler:
    """Samples a process tree's CPU and memory (and GPU) during a perf run; for a
    server it did not start (no pid), the server's Prometheus endpoint instead:
    process_cpu_seconds_total and process_resident_memory_bytes (tritonx exports
    them; Triton does not, and its rows say n/a), nv_gpu_* for the GPUs."""

    def __init__(
        self, pid: int | None, interval_s: float = 0.1, metrics_url: str | None = None
    ) -> None:
        self.pid = pid
        self._remote = (
            MetricsCollector(metrics_url, 500, "", "")
            if pid is None and metrics_url
            else None
        )
        self._remote_usage = Usage()
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rss = 0.0
        self._gpu_mem = 0.0
        self._gpu_utils: list[float] = []
        self._cpu_start = 0.0
        self._wall_start = 0.0

    def _tree(self) -> list[psutil.Process]:
        assert self.pid is not None
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def _cpu_seconds(self) -> float:
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
        return total

    def _sample(self) -> None:
        procs = self._tree()
        rss = 0.0
        for proc in procs:
            try:
                rss += proc.memory_info().rss / (1 << 20)
            except psutil.Error:
                continue
        self._rss = max(self._rss, rss)
        gpu = NVML.sample({p.pid for p in procs})
        if gpu is not None:
            self._gpu_mem = max(self._gpu_mem, gpu[0])
            self._gpu_utils.append(gpu[1])

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except psutil.Error:
                return

    def __enter__(self) -> UsageSampler:
        if self._remote is not None:
            self._remote.start()
        if self.pid is None:
            return self
        self._cpu_start = self._cpu_seconds()
        self._wall_start = time.monotonic()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._remote is not None:
            self._remote_usage = _usage_from_metrics(self._remote.stop())

    @property
    def remote_error(self) -> str | None:
        return self._remote.error if self._remote else None

    def usage(self) -> Usage:
        if self.pid is None:
            return self._remote_usage
        try:
            cpu = self._cpu_seconds() - self._cpu_start
        except psutil.Error:
            return Usage()
        wall = max(time.monotonic() - self._wall_start, 1e-6)
        gpu = NVML.device_count() > 0
        return Usage(
            cpu_percent=round(100.0 * cpu / wall, 1),
            rss_mb=round(self._rss, 1),
            gpu_memory_mb=round(self._gpu_mem, 1) if gpu else None,
            gpu_util_percent=(
                round(sum(self._gpu_utils) / len(self._gpu_utils), 1)
                if gpu and self._gpu_utils
                else None
            ),
        )


def _usage_from_metrics(metrics: StepMetrics | None) -> Usage:
    if metrics is None:
        return Usage()
    gpu_mem = (
        round(sum(metrics.gpu_memory_max.values()) / (1 << 20), 1)
        if metrics.gpu_memory_max
        else None
    )
    utils = list(metrics.gpu_utilization.values())
    return Usage(
        cpu_percent=(
            round(100.0 * metrics.server_cpu, 1)
            if metrics.server_cpu is not None
            else None
        ),
        rss_mb=(
            round(metrics.server_rss_max / (1 << 20), 1)
            if metrics.server_rss_max is not None
            else None
        ),
        # Device-wide: the endpoint does not tell which process uses the memory.
        gpu_memory_mb=gpu_mem,
        gpu_util_percent=round(100.0 * sum(utils) / len(utils), 1) if utils else None,
    )
