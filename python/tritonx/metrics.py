"""Prometheus metrics with Triton's names, help texts and labels.

Nothing here counts anything: at scrape time ``TritonCollector`` reads the core's own
accounting (``Model.statistics()`` / ``pending_count()``, architecture §4) through the
ModelManager, so /metrics and the statistics API can never disagree.

The text is rendered here rather than by ``prometheus_client.generate_latest``: recent
prometheus_client versions rename every counter family to ``<name>_total`` while
Triton's counters are called ``nv_inference_count`` etc., and dashboards written for
Triton query those exact names. ``TritonCollector`` is still a regular
prometheus_client collector, so it can be registered in a ``CollectorRegistry`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import psutil
from prometheus_client.metrics_core import Metric

from tritonx.frontends.http_routes import log_request
from tritonx.metrics_config import MetricsConfig
from tritonx.repository.series import Counts, MetricSeries, total

logger = logging.getLogger("tritonx.metrics")

FAILURE_REASONS = ("OTHER", "BACKEND", "CANCELED", "REJECTED")  # Triton's order

# (metric name, help text, statistics key): cumulative durations in microseconds.
_DURATIONS = (
    (
        "nv_inference_request_duration_us",
        "Cumulative inference request duration in microseconds "
        "(includes cached requests)",
        "success",
    ),
    (
        "nv_inference_queue_duration_us",
        "Cumulative inference queuing duration in microseconds "
        "(includes cached requests)",
        "queue",
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds "
        "(does not include cached requests)",
        "compute_input",
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds "
        "(does not include cached requests)",
        "compute_infer",
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds "
        "(does not include cached requests)",
        "compute_output",
    ),
)


# Per-model response cache counters: (name, help, statistics key, divisor of the
# ns total; 0 for the count).
_CACHE = (
    ("nv_cache_num_hits_per_model", "Number of cache hits per model", "cache_hit", 0),
    (
        "nv_cache_hit_duration_per_model",
        "Total cache hit duration per model, in microseconds",
        "cache_hit",
        1000,
    ),
    (
        "nv_cache_num_misses_per_model",
        "Number of cache misses per model",
        "cache_miss",
        0,
    ),
    (
        "nv_cache_miss_duration_per_model",
        "Total cache miss (insert+lookup) duration per model, in microseconds",
        "cache_miss",
        1000,
    ),
)


# Latency summaries (--metrics-config summary_latencies=true): (name, help, key of
# Model.latency_summaries()), in Triton's order. Triton's help texts, including the
# compute ones that say "Cumulative".
_SUMMARIES = (
    (
        "nv_inference_request_summary_us",
        "Summary of inference request duration in microseconds "
        "(includes cached requests)",
        "request",
    ),
    (
        "nv_inference_queue_summary_us",
        "Summary of inference queuing duration in microseconds "
        "(includes cached requests)",
        "queue",
    ),
    (
        "nv_inference_compute_input_summary_us",
        "Cumulative compute input duration in microseconds "
        "(does not include cached requests)",
        "compute_input",
    ),
    (
        "nv_inference_compute_infer_summary_us",
        "Cumulative compute inference duration in microseconds "
        "(does not include cached requests)",
        "compute_infer",
    ),
    (
        "nv_inference_compute_output_summary_us",
        "Cumulative inference compute output duration in microseconds "
        "(does not include cached requests)",
        "compute_output",
    ),
    (
        "nv_cache_hit_summary_per_model",
        "Summary of cache hit counts/durations per model, in microseconds.",
        "cache_hit",
    ),
    (
        "nv_cache_miss_summary_per_model",
        "Summary of cache miss counts/durations per model, in microseconds.",
        "cache_miss",
    ),
)
# Triton (DLIS-4762) shows no request summary for a model using the response cache,
# and cache summaries for those models only.
_CACHE_ONLY = frozenset({"cache_hit", "cache_miss"})
_NOT_WITH_CACHE = frozenset({"request"})


def uses_response_cache(loaded: Any) -> bool:
    """Whether Triton gives this model the per-model cache families: its config
    enables the response cache (whether or not the server has one, as 2.51 does)."""
    config = getattr(loaded, "config", None)
    return bool(config is not None and config.response_cache.enable)


class StatsSource(Protocol):
    """What the collector needs from the ModelManager (architecture §6)."""

    # (model key, version) -> seconds; the key as ready_models' ids give it.
    model_load_durations: dict[tuple[str, int], float]

    # What retired versions left to their label sets' series (repository/series.py).
    series: MetricSeries

    # (id with .namespace, .name and .key, loaded version with .version and .core):
    # every object a series counts, serving or still draining.
    def metric_models(self) -> Sequence[tuple[Any, Any]]: ...


class CpuSampler:
    """CPU utilisation over the last ``--metrics-interval-ms`` window, like Triton.

    Triton samples /proc/stat once per interval and reports the busy fraction of that
    window; ``psutil.cpu_percent(None)`` gives exactly "busy since the previous call".
    """

    def __init__(self) -> None:
        self.utilization = 0.0
        psutil.cpu_percent(interval=None)  # primes the first window

    def sample(self) -> None:
        self.utilization = psutil.cpu_percent(interval=None) / 100.0

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.sample()


def _family(name: str, documentation: str, typ: str) -> Metric:
    # None of Triton's counter names ends in "_total", so Metric keeps them as given.
    return Metric(name, documentation, typ)


def _model_defined_metrics() -> Iterator[Metric]:
    """Families that Python models created with pb_utils.MetricFamily; one without
    series prints nothing (render skips it), as prometheus-cpp's."""
    from tritonx.backends.pb.metrics import MetricFamily, family_series, metric_families

    kinds = {
        MetricFamily.COUNTER: "counter",
        MetricFamily.GAUGE: "gauge",
        MetricFamily.HISTOGRAM: "histogram",
    }
    for family in metric_families():
        out = _family(family.name, family.description, kinds[family.kind])
        for series in family_series(family):
            if series.buckets is None:
                out.add_sample(family.name, series.labels, series.value)
                continue
            # prometheus-cpp's order: _count, _sum, then the cumulative buckets;
            # bounds printed as doubles ("1", not "1.0").
            out.add_sample(f"{family.name}_count", series.labels, series.count)
            out.add_sample(f"{family.name}_sum", series.labels, series.sum)
            cumulative = 0
            bounds = [_format_double(b) for b in series.buckets] + ["+Inf"]
            for le, hits in zip(bounds, list(series.bucket_counts), strict=True):
                cumulative += hits
                out.add_sample(
                    f"{family.name}_bucket", {**series.labels, "le": le}, cumulative
                )
        yield out


class TritonCollector:
    """prometheus_client collector over the live models of a ModelManager."""

    def __init__(
        self,
        source: StatsSource,
        *,
        cpu: CpuSampler | None = None,
        arena_stats: Callable[[], tuple[int, int] | None] | None = None,
        gpu: Any = None,
        config: MetricsConfig | None = None,
    ) -> None:
        self.source = source
        self.config = config or MetricsConfig()
        self.cpu = cpu
        self.arena_stats = arena_stats
        self.gpu = gpu  # gpu_metrics.GpuSampler, or None: no GPU families

    def _models(
        self,
    ) -> Iterator[tuple[dict[str, str], list[Any], Counts | None, float | None]]:
        """Per label set, by namespace, name and version: its labels, the objects
        it counts (the serving one first), what retired ones left it, and the
        load seconds. With --model-namespacing the labels name the namespace too,
        as Triton's."""
        durations = self.source.model_load_durations
        carried = self.source.series.carried
        groups: dict[tuple[Any, int], list[Any]] = {}
        for model_id, loaded in self.source.metric_models():
            groups.setdefault((model_id, loaded.version), []).append(loaded)
        for (model_id, version), members in sorted(groups.items(), key=lambda g: g[0]):
            labels = {"model": model_id.name, "version": str(version)}
            if model_id.namespace:
                labels["namespace"] = model_id.namespace
            key = (model_id.key, version)
            yield labels, members, carried.get(key), durations.get(key)

    def collect(self) -> Iterable[Metric]:
        success = _family(
            "nv_inference_request_success",
            "Number of successful inference requests, all batch sizes",
            "counter",
        )
        failure = _family(
            "nv_inference_request_failure",
            "Number of failed inference requests, all batch sizes",
            "counter",
        )
        count = _family(
            "nv_inference_count",
            "Number of inferences performed (does not include cached requests)",
            "counter",
        )
        execs = _family(
            "nv_inference_exec_count",
            "Number of model executions performed (does not include cached requests)",
            "counter",
        )
        durations = [(_family(n, h, "counter"), key) for n, h, key in _DURATIONS]
        pending = _family(
            "nv_inference_pending_request_count",
            "Instantaneous number of pending requests awaiting execution per-model.",
            "gauge",
        )
        load = _family(
            "nv_model_load_duration_secs", "Model load time in seconds", "gauge"
        )
        restarts = _family(
            "tritonx_python_stub_restarts",
            "Number of times a python model's stub processes were restarted",
            "counter",
        )
        cache = [(_family(n, h, "counter"), key, div) for n, h, key, div in _CACHE]
        summaries = [(_family(n, h, "summary"), key) for n, h, key in _SUMMARIES]
        for labels, members, carried, seconds in self._models():
            instances = [i for m in members for i in getattr(m, "instances", ())]
            counts = [i.restarts for i in instances if hasattr(i, "restarts")]
            if counts:
                restarts.add_sample(restarts.name, labels, sum(counts))
            loaded = members[0]
            stats = total((m.core.statistics() for m in members), carried)
            success.add_sample(success.name, labels, stats["success"][0])
            failures = stats.get("failures", {})
            for reason in FAILURE_REASONS:
                failure.add_sample(
                    failure.name,
                    {**labels, "reason": reason},
                    failures.get(reason, 0),
                )
            count.add_sample(count.name, labels, stats["inference_count"])
            execs.add_sample(execs.name, labels, stats["execution_count"])
            cached = uses_response_cache(loaded)
            # Triton's latency counters, the per-model cache ones included, are
            # what counter_latencies=false turns off.
            if self.config.counter_latencies:
                for family, key in durations:
                    family.add_sample(family.name, labels, stats[key][1] // 1000)
                if cached:
                    for family, key, div in cache:
                        value = stats[key][0] if div == 0 else stats[key][1] // div
                        family.add_sample(family.name, labels, value)
            pending.add_sample(
                pending.name, labels, sum(m.core.pending_count() for m in members)
            )
            # Quantiles do not add up: the serving object's (a draining one's
            # requests are a reload's last few).
            if self.config.summary_latencies:
                self._add_summaries(summaries, labels, loaded.core, cached)
            if seconds is not None:
                load.add_sample(load.name, labels, seconds)
        yield from (success, failure, count, execs)
        yield from (family for family, _ in durations)
        yield from (family for family, _, _ in cache if family.samples)
        yield pending
        if load.samples:
            yield load
        if restarts.samples:
            yield restarts
        yield from self._process_metrics()
        yield from (family for family, _ in summaries if family.samples)
        yield from _model_defined_metrics()

    def _add_summaries(
        self,
        summaries: list[tuple[Metric, str]],
        labels: dict[str, str],
        core: Any,
        cached: bool,
    ) -> None:
        """One model's summary samples, as prometheus-cpp writes them: _count,
        _sum, then one sample per quantile with the quantile label last."""
        reading = getattr(core, "latency_summaries", None)
        values = reading() if reading is not None else None
        if values is None:  # built before the setting, or not a core model
            return
        quantiles = [_format_double(q) for q in self.config.summary_quantiles]
        for family, key in summaries:
            if key in (_NOT_WITH_CACHE if cached else _CACHE_ONLY):
                continue
            count, total, points = values[key]
            family.add_sample(f"{family.name}_count", labels, count)
            family.add_sample(f"{family.name}_sum", labels, total)
            for label, value in zip(quantiles, points, strict=True):
                family.add_sample(family.name, {**labels, "quantile": label}, value)

    def _process_metrics(self) -> Iterator[Metric]:
        arena = self.arena_stats() if self.arena_stats else None
        if arena is not None:
            total, used = arena
            for name, doc, value in (
                (
                    "nv_pinned_memory_pool_total_bytes",
                    "Pinned memory pool total memory size, in bytes",
                    total,
                ),
                (
                    "nv_pinned_memory_pool_used_bytes",
                    "Pinned memory pool used memory size, in bytes",
                    used,
                ),
            ):
                gauge = _family(name, doc, "gauge")
                gauge.add_sample(name, {}, value)
                yield gauge
        if self.gpu is not None:
            yield from self.gpu.families()
        if self.cpu is None:
            return
        memory = psutil.virtual_memory()
        cpu_gauges: tuple[tuple[str, str, float], ...] = (
            (
                "nv_cpu_utilization",
                "CPU utilization rate [0.0 - 1.0]",
                self.cpu.utilization,
            ),
            (
                "nv_cpu_memory_total_bytes",
                "CPU total memory (RAM), in bytes",
                memory.total,
            ),
            (
                # Triton reports MemTotal - MemAvailable from /proc/meminfo.
                "nv_cpu_memory_used_bytes",
                "CPU used memory (RAM), in bytes",
                memory.total - memory.available,
            ),
        )
        for name, doc, reading in cpu_gauges:
            gauge = _family(name, doc, "gauge")
            gauge.add_sample(name, {}, reading)
            yield gauge
        # The server process itself, under the Prometheus client libraries' standard
        # names (Triton has no such families): what tools measuring a remote server
        # (tritonx-perf --collect-metrics, tritonx-analyze --server-url) read.
        # Stub processes (--python-execution-mode=process) are the server's too.
        cpu_total, rss_total = 0.0, 0
        root = psutil.Process()
        for proc in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.Error):  # a stub that just exited
                times = proc.cpu_times()
                cpu_total += times.user + times.system
                rss_total += proc.memory_info().rss
        cpu_seconds = _family(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            "counter",
        )
        cpu_seconds.add_sample("process_cpu_seconds_total", {}, cpu_total)
        yield cpu_seconds
        rss = _family(
            "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge"
        )
        rss.add_sample("process_resident_memory_bytes", {}, rss_total)
        yield rss


def _format_value(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)):
        return str(int(value))  # Triton >= 2.4x prints integers without decimals
    if math.isnan(value):
        return "Nan"  # prometheus-cpp's spelling (an empty summary window)
    if math.isfinite(value):
        return _format_double(value)  # 8.550000000000001 where repr says 8.55
    return repr(float(value))


def _format_double(value: float) -> str:
    """A double as prometheus-cpp writes one (16 significant digits, shortest)."""
    return f"{value:.16g}"


def _label_items(labels: dict[str, str]) -> list[tuple[str, str]]:
    # Sorted like Triton's, except that a summary's quantile label and a histogram
    # bucket's le label come last, where prometheus-cpp appends them.
    return sorted(
        labels.items(), key=lambda item: (item[0] in ("quantile", "le"), item[0])
    )


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render(families: Iterable[Metric]) -> bytes:
    """Prometheus text exposition (format 0.0.4) with the family names unchanged."""
    lines: list[str] = []
    for family in families:
        if not family.samples:
            continue  # Triton prints no HELP/TYPE for a family without series
        lines.append(f"# HELP {family.name} {family.documentation}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(
                    f'{key}="{_escape(str(val))}"'
                    for key, val in _label_items(sample.labels)
                )
                lines.append(f"{sample.name}{{{labels}}} {_format_value(sample.value)}")
            else:
                lines.append(f"{sample.name} {_format_value(sample.value)}")
    return ("\n".join(lines) + "\n").encode()


def native_arena_stats(
    context: Any = None,
) -> Callable[[], tuple[int, int] | None] | None:
    """Reader for the core's pinned arena (total, used) bytes, if the core has one:
    the server context's (--pinned-memory-pool-byte-size), else the process's."""
    try:
        from tritonx import _native
    except ImportError:
        return None
    reader = getattr(context, "arena_stats", None) or getattr(
        _native, "arena_stats", None
    )
    if reader is None:
        return None

    # The core's tensor arena is tritonx's counterpart of Triton's pinned memory
    # pool (it is page-locked when CUDA is usable): reserved = pool size, in use =
    # used. Triton reports these gauges even when pinning is unavailable; so do we.
    def read() -> tuple[int, int] | None:
        stats = reader()
        if not isinstance(stats, dict):
            return None
        return int(stats.get("reserved_bytes", 0)), int(stats.get("in_use_bytes", 0))

    return read


async def _flush_stub_metrics() -> None:
    """Models in stub processes batch their metric updates; each live stub hands
    over what it has before a scrape renders (a round trip per stub, off the
    event loop), so the scrape sees every update made before it."""
    from tritonx.backends.stub import metrics_sync

    if metrics_sync.have_stubs():
        await asyncio.to_thread(metrics_sync.flush_stubs)


class MetricsService:
    """GET /metrics over a minimal HTTP/1.1 server (keep-alive, no request bodies).

    Prometheus only ever sends small GETs here, so asyncio streams are enough and
    the metrics port does not depend on the HTTP frontend's internals.
    """

    def __init__(self, collector: TritonCollector, host: str, port: int) -> None:
        self.collector = collector
        self.host = host
        self.port = port
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self, grace: float = 0.0) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), max(grace, 0.1))
            self._server = None

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                parts = request_line.split()
                headers = {
                    key.strip().lower(): val.strip()
                    for key, _, val in (h.partition(":") for h in header_lines if h)
                }
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                keep_alive = headers.get("connection", "").lower() != "close"
                path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
                if parts:
                    log_request(parts[0].encode("latin-1"), path.encode("latin-1"))
                if parts and parts[0] == "GET" and path == "/metrics":
                    await _flush_stub_metrics()
                    body = render(self.collector.collect())
                else:
                    # Triton's metrics server answers other paths with an empty 200.
                    body = b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\n"
                    b"Content-Type: text/plain; charset=utf-8\r\n"
                    + f"Content-Length: {len(body)}\r\n".encode()
                    + (b"" if keep_alive else b"Connection: close\r\n")
                    + b"\r\n"
                    + body
                )
                await writer.drain()
                if not keep_alive:
                    break
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            asyncio.LimitOverrunError,
        ):
            pass
        except Exception:
            logger.exception("metrics request failed")
        finally:
            writer.close()
