"""--collect-metrics: the server's Prometheus endpoint, scraped every
--metrics-interval ms while a step is measured, as perf_analyzer does. A step's
report gets the GPUs' average utilization and power, their peak and total memory
(perf_analyzer's four), the model's counters over the step (requests, inferences,
executions, from Triton's nv_inference_* families), and, where the server exports
them, its process CPU and resident memory (process_cpu_seconds_total,
process_resident_memory_bytes; tritonx does, Triton does not). An endpoint that
cannot be reached or read is reported once and skipped: the run goes on."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

Sample = dict[tuple[str, frozenset[tuple[str, str]]], float]

GPU_FAMILIES = (
    "nv_gpu_utilization",
    "nv_gpu_power_usage",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_memory_total_bytes",
)
MODEL_COUNTERS = {
    "nv_inference_request_success": "requests succeeded",
    "nv_inference_request_failure": "requests failed",
    "nv_inference_count": "inferences",
    "nv_inference_exec_count": "executions",
}


def parse_prometheus(text: str) -> Sample:
    """The exposition text's samples as {(name, labels): value}, names without
    the `_total` the parser gives counters (Triton's own names have none)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Sample = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name.removesuffix("_total")
                out[(name, frozenset(sample.labels.items()))] = sample.value
    except ValueError:
        pass  # what parsed before a malformed line is kept
    return out


@dataclass
class StepMetrics:
    """One step's metrics; empty dicts when the endpoint had none of a kind."""

    scrapes: int = 0
    gpu_utilization: dict[str, float] = field(default_factory=dict)  # 0..1, avg
    gpu_power: dict[str, float] = field(default_factory=dict)  # watts, avg
    gpu_memory_max: dict[str, float] = field(default_factory=dict)  # bytes
    gpu_memory_total: dict[str, float] = field(default_factory=dict)  # bytes
    model_counters: dict[str, float] = field(default_factory=dict)  # deltas
    server_cpu: float | None = None  # process CPU, cores busy on average
    server_rss_max: float | None = None  # bytes


class MetricsCollector:
    """Scrapes one endpoint on a background thread between start() and stop().

    Thread-safety: start/stop from the measuring thread; the scraper thread only
    appends to its own list, read after it is joined."""

    def __init__(self, url: str, interval_ms: int, model: str, version: str) -> None:
        if "://" not in url:
            url = "http://" + url
        parsed = urllib.parse.urlsplit(url)
        self._host = parsed.hostname or "localhost"
        self._port = parsed.port or 8002
        self._path = parsed.path or "/metrics"
        self._interval = interval_ms / 1000.0
        self._model = model
        self._version = version
        self._samples: list[tuple[float, Sample]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None  # why the endpoint was given up on

    def scrape(self) -> Sample | None:
        try:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=5)
            try:
                conn.request("GET", self._path)
                response = conn.getresponse()
                body = response.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            self.error = f"cannot read metrics from {self.url}: {exc}"
            return None
        if response.status != 200:
            self.error = f"metrics endpoint {self.url} answered HTTP {response.status}"
            return None
        return parse_prometheus(body.decode("utf-8", "replace"))

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}{self._path}"

    def _take(self) -> bool:
        sample = self.scrape()
        if sample is None:
            return False
        self._samples.append((time.monotonic(), sample))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if not self._take():
                return

    def start(self) -> None:
        """Takes the step's first scrape now (counters start from it), then one
        every interval on a background thread."""
        self._samples = []
        self._stop.clear()
        self._thread = None
        if self.error is not None or not self._take():
            return
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> StepMetrics | None:
        """The step's metrics; None when the endpoint failed (see .error)."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.error is not None or not self._take():  # the step's end
            return None
        return self._summarize()

    def _summarize(self) -> StepMetrics:
        out = StepMetrics(scrapes=len(self._samples))
        per_gpu: dict[str, dict[str, list[float]]] = {}
        for _, sample in self._samples:
            for (name, labels), value in sample.items():
                if name in GPU_FAMILIES:
                    uuid = dict(labels).get("gpu_uuid", "gpu")
                    per_gpu.setdefault(name, {}).setdefault(uuid, []).append(value)
        for uuid, values in per_gpu.get("nv_gpu_utilization", {}).items():
            out.gpu_utilization[uuid] = sum(values) / len(values)
        for uuid, values in per_gpu.get("nv_gpu_power_usage", {}).items():
            out.gpu_power[uuid] = sum(values) / len(values)
        for uuid, values in per_gpu.get("nv_gpu_memory_used_bytes", {}).items():
            out.gpu_memory_max[uuid] = max(values)
        for uuid, values in per_gpu.get("nv_gpu_memory_total_bytes", {}).items():
            out.gpu_memory_total[uuid] = max(values)
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        for family, label in MODEL_COUNTERS.items():
            before, after = (
                self._model_value(first, family),
                self._model_value(last, family),
            )
            if after is not None:
                out.model_counters[label] = after - (before or 0.0)
        cpu = [v for (name, _), v in last.items() if name == "process_cpu_seconds"]
        cpu0 = [v for (name, _), v in first.items() if name == "process_cpu_seconds"]
        if cpu and cpu0 and t1 > t0:
            out.server_cpu = (cpu[0] - cpu0[0]) / (t1 - t0)
        rss = [
            v
            for _, sample in self._samples
            for (name, _), v in sample.items()
            if name == "process_resident_memory_bytes"
        ]
        if rss:
            out.server_rss_max = max(rss)
        return out

    def _model_value(self, sample: Sample, family: str) -> float | None:
        total = None
        for (name, labels), value in sample.items():
            if name != family:
                continue
            lab = dict(labels)
            if lab.get("model") != self._model:
                continue
            if self._version and lab.get("version") != self._version:
                continue
            total = (total or 0.0) + value
        return total


def report_lines(metrics: StepMetrics) -> list[str]:
    """perf_analyzer's 'Server Prometheus Metrics' block, plus the model's
    counters and the server process where the endpoint has them."""
    lines = ["  Server Prometheus Metrics: "]
    blocks = (
        ("Avg GPU Utilization", metrics.gpu_utilization, lambda v: f"{v * 100:g}%"),
        ("Avg GPU Power Usage", metrics.gpu_power, lambda v: f"{v:g} watts"),
        ("Max GPU Memory Usage", metrics.gpu_memory_max, lambda v: f"{v:.0f} bytes"),
        ("Total GPU Memory", metrics.gpu_memory_total, lambda v: f"{v:.0f} bytes"),
    )
    if not metrics.gpu_utilization:
        lines.append("    GPU metrics: none (the server reports no GPU)")
    for title, values, fmt in blocks:
        if values:
            lines.append(f"    {title}: ")
            lines += [f"      {uuid} : {fmt(v)}" for uuid, v in sorted(values.items())]
    if metrics.model_counters:
        parts = ", ".join(
            f"{label} {v:.0f}" for label, v in metrics.model_counters.items()
        )
        lines.append(f"    Model counters over the step: {parts}")
    if metrics.server_cpu is not None or metrics.server_rss_max is not None:
        cpu = (
            f"{metrics.server_cpu * 100:.0f}%"
            if metrics.server_cpu is not None
            else "n/a"
        )
        rss = (
            f"{metrics.server_rss_max / 1e6:.0f} MB"
            if metrics.server_rss_max is not None
            else "n/a"
        )
        lines.append(f"    Server process: CPU {cpu}, max RSS {rss}")
    return lines


def csv_cells(metrics: StepMetrics | None) -> list[str]:
    """perf_analyzer's four metric columns: 'uuid:value;' per GPU."""
    if metrics is None:
        return ["", "", "", ""]

    def cell(values: dict[str, float], scale: float = 1.0) -> str:
        return "".join(f"{u}:{v * scale:g};" for u, v in sorted(values.items()))

    return [
        cell(metrics.gpu_utilization, 100.0),
        cell(metrics.gpu_power),
        cell(metrics.gpu_memory_max),
        cell(metrics.gpu_memory_total),
    ]


METRIC_COLUMNS = [
    "Avg GPU Utilization",
    "Avg GPU Power Usage",
    "Max GPU Memory Usage",
    "Total GPU Memory",
]
