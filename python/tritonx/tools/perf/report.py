"""What tritonx-perf reports: the per-step summary (perf_analyzer's layout), the CSV
of -f (perf_analyzer's header names and columns, so either tool's file feeds the
same readers) and the profile export of --profile-export-file (every request's
timestamps, perf_analyzer's JSON shape)."""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tritonx import _native
from tritonx.tools.perf.measure import StepResult, latencies_us, percentile_of
from tritonx.tools.perf.metrics import METRIC_COLUMNS, StepMetrics, csv_cells
from tritonx.tools.perf.server_api import StatsSnapshot
from tritonx.tools.perf.sweep import Sweep


@dataclass
class Summary:
    """One step's numbers, in microseconds where they are times."""

    mode: str
    value: float
    stable: bool
    request_count: int
    sequence_count: int  # sequences whose END was answered (sequence models)
    seconds: float
    throughput: float  # inferences per second (requests x batch)
    latency_avg: float
    latency_std: float
    percentiles: dict[int, float]
    stabilizing_latency: float  # the average, or --percentile's value
    send: float
    recv: float
    delayed: int
    # Server side (absent when statistics could not be read).
    server: dict[str, float] | None
    # Streaming (decoupled): responses per request, first response, between responses.
    responses_per_request: float
    first_response: float
    inter_response: float
    response_throughput: float
    metrics: StepMetrics | None = None  # --collect-metrics
    sequences: bool = False  # a sequence model: report the sequence count
    latency_unstable: bool = False
    # The composing models' numbers (name, version, as ``server``), when there are.
    composing: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)

    @property
    def response_wait(self) -> float:
        return max(self.latency_avg - self.send - self.recv, 0.0)

    @property
    def network(self) -> float:
        if not self.server:
            return self.response_wait
        s = self.server
        used = (
            s["queue"] + s["compute_input"] + s["compute_infer"] + s["compute_output"]
        )
        return max(self.response_wait - used, 0.0)


def summarize(step: StepResult, batch: int, percentile: int) -> Summary:
    records = step.merged()
    lat = latencies_us(records)
    ok = records["ok"]
    count = int(ok.sum())
    seconds = step.seconds()
    ordered = np.sort(lat)
    pcts = {p: percentile_of(ordered, p) for p in (50, 90, 95, 99)}
    if percentile > 0 and percentile not in pcts:
        pcts[percentile] = percentile_of(ordered, percentile)
    avg = float(lat.mean()) if lat.size else 0.0
    stats = step.stats()
    server = _server_numbers(stats) if stats is not None else None
    composing = [
        (name, snapshot.version, numbers)
        for name, snapshot in ((stats.composing or {}).items() if stats else ())
        if (numbers := _server_numbers(snapshot)) is not None
    ]
    if server is not None and composing:
        # perf_analyzer's totals for an ensemble or BLS model: the time its
        # composing models' requests spent queued and computing, the rest overhead.
        for key in ("queue", "compute_input", "compute_infer", "compute_output"):
            server[key] = sum(numbers[key] for _, _, numbers in composing)
        server["overhead"] = max(
            server["request"]
            - sum(server[k] for k in ("queue", "compute_input", "compute_infer"))
            - server["compute_output"],
            0.0,
        )
    responses = records["response_count"][ok]
    first = (records["first_response_ns"][ok] - records["start_ns"][ok]) / 1000.0
    # Gaps between consecutive responses of the same (successful) request.
    owner = np.repeat(np.arange(len(ok)), records["response_count"])
    times = records["response_ns"]
    same = (owner[1:] == owner[:-1]) & ok[owner[1:]] if owner.size > 1 else owner[:0]
    gaps = np.diff(times)[same] / 1000.0 if owner.size > 1 else np.zeros(0)
    has_first = responses > 0
    return Summary(
        mode=step.mode,
        value=step.value,
        stable=step.stable,
        request_count=count,
        sequence_count=int(np.count_nonzero(records["sequence_end"] & ok)),
        seconds=seconds,
        throughput=count * batch / seconds if seconds else 0.0,
        latency_avg=avg,
        latency_std=float(lat.std()) if lat.size else 0.0,
        percentiles=pcts,
        stabilizing_latency=pcts[percentile] if percentile > 0 else avg,
        send=float(records["send_ns"][ok].mean() / 1000.0) if count else 0.0,
        recv=float(records["recv_ns"][ok].mean() / 1000.0) if count else 0.0,
        delayed=step.delayed,
        server=server,
        responses_per_request=float(responses.mean()) if count else 0.0,
        first_response=float(first[has_first].mean()) if has_first.any() else 0.0,
        inter_response=float(np.mean(gaps)) if gaps.size else 0.0,
        response_throughput=float(responses.sum()) / seconds if seconds else 0.0,
        latency_unstable=step.latency_unstable,
        composing=composing,
    )


def _server_numbers(stats: StatsSnapshot) -> dict[str, float] | None:
    """Per-request averages (usec) from a window's statistics deltas."""
    if not stats.counts or not stats.ns:
        return None
    counts, ns = stats.counts, stats.ns

    def per(key: str) -> float:
        return ns.get(key, 0) / max(counts.get(key, 0), 1) / 1000.0

    request = per("success")
    parts = {
        k: per(k) for k in ("queue", "compute_input", "compute_infer", "compute_output")
    }
    return {
        "inference_count": float(stats.inference_count),
        "execution_count": float(stats.execution_count),
        "success_count": float(counts.get("success", 0)),
        "request": request,
        "overhead": max(request - sum(parts.values()), 0.0),
        **parts,
    }


def print_settings(args: argparse.Namespace, sequence: bool, sweep: Sweep) -> None:
    """perf_analyzer's "Measurement Settings" header, from the parsed flags."""
    print("*** Measurement Settings ***")
    print(f"  Batch size: {args.batch}")
    print(f"  Service Kind: {getattr(args, 'service_kind', 'triton').upper()}")
    if args.measurement_mode == "count_windows":
        print('  Using "count_windows" mode for stabilization')
        print(
            f"  Minimum number of samples in each window: {args.measurement_request_count}"
        )
    else:
        print('  Using "time_windows" mode for stabilization')
        print(f"  Measurement window: {args.measurement_interval} msec")
    if args.percentile > 0:
        print(f"  Stabilizing using p{args.percentile} latency and throughput")
    else:
        print("  Stabilizing using average latency and throughput")
    print(f"  Latency limit: {args.latency_threshold:g} msec")
    if getattr(args, "fixed_schedule", False):
        # One step at the schedule's times (load_modes.py): no range.
        print(
            f"  Fixed schedule: {args.request_count} requests, "
            f"{sweep.start:g} requests/sec on average"
        )
    elif getattr(args, "periodic_concurrency_range", None):
        print(
            f"  Periodic concurrency: {args.periodic_concurrency_range} "
            f"(a group more each {args.request_period} responses)"
        )
    elif getattr(args, "session_concurrency", None):
        print(
            f"  Session concurrency: {args.session_concurrency} chat sessions at a "
            f"time ({args.request_count} turns in all)"
        )
    elif getattr(args, "request_intervals", None):
        # The intervals' step runs as a request rate (transport.py): no range.
        print(f"  Request intervals: {args.request_intervals}")
    elif sweep.mode == "request_rate":
        print(
            f"  Request rate range: {sweep.start:g}:{sweep.end:g}:{sweep.step:g} "
            "requests/sec"
        )
    else:
        print(f"  Concurrency limit: {sweep.end:g} concurrent requests")
    if sweep.binary:
        print("  Using binary search for the highest load within the latency limit")
    if sequence:
        print(
            f"  Sequence length: {args.sequence_length or 20} (+/- "
            f"{args.sequence_length_variation:g}%)"
        )
    if args.request_count:
        print(f"  Request count: {args.request_count} per step (one window)")
    if args.warmup_request_count:
        print(f"  Warm-up: {args.warmup_request_count} requests before each step")
    print(
        "  Using asynchronous calls for inference"
        if args.async_mode
        else "  Using synchronous calls for inference"
    )
    print("  The load is generated by C++ client threads (tritonx-perf)")
    print()


def _us(value: float) -> int:
    return round(value)


def step_label(summary: Summary) -> str:
    if summary.mode == "concurrency":
        return f"Request concurrency: {summary.value:g}"
    return f"Request Rate: {summary.value:g} inference requests per seconds"


def print_step(
    out: TextIO, summary: Summary, protocol: str, streaming: bool, percentile: int
) -> None:
    w = out.write
    w(f"{step_label(summary)}\n")
    w("  Client: \n")
    w(f"    Request count: {summary.request_count}\n")
    if summary.sequences:
        rate = summary.sequence_count / summary.seconds if summary.seconds else 0.0
        w(f"    Sequence count: {summary.sequence_count} ({rate:g} seq/sec)\n")
    w(f"    Throughput: {summary.throughput:g} infer/sec\n")
    if streaming:
        w(f"    Response Throughput: {summary.response_throughput:g} infer/sec\n")
        w(f"    Avg responses per request: {summary.responses_per_request:g}\n")
        w(f"    Avg time to first response: {_us(summary.first_response)} usec\n")
        w(f"    Avg inter-response latency: {_us(summary.inter_response)} usec\n")
    if percentile < 0:
        w(
            f"    Avg latency: {_us(summary.latency_avg)} usec (standard deviation "
            f"{_us(summary.latency_std)} usec)\n"
        )
    for p in sorted(summary.percentiles):
        w(f"    p{p} latency: {_us(summary.percentiles[p])} usec\n")
    kind, parts = (
        ("gRPC", "(un)marshal request/response")
        if protocol == "grpc"
        else ("HTTP", "send/recv")
    )
    w(
        f"    Avg {kind} time: {_us(summary.latency_avg)} usec ({parts} "
        f"{_us(summary.send + summary.recv)} usec + response wait "
        f"{_us(summary.response_wait)} usec)\n"
    )
    if summary.delayed:
        w(f"    Delayed requests (sent late for the rate): {summary.delayed}\n")
    if summary.server is not None:
        w("  Server: \n")
        _write_server(w, summary.server, "    ", totals=bool(summary.composing))
        if summary.composing:
            w("\n  Composing models: \n")
            for name, version, numbers in summary.composing:
                w(f"  {name}, version: {version}\n")
                _write_server(w, numbers, "      ", totals=False)
    if summary.latency_unstable:
        w(
            "  Warning: request latency is not stabilizing (the throughput is); "
            "try a lower request rate\n"
        )
    if not summary.stable:
        w(
            "  Warning: the measurement did not stabilize within the windows allowed "
            "(--max-trials); the last windows are reported\n"
        )
    w("\n")


def _write_server(
    w: Callable[[str], object], s: dict[str, float], indent: str, totals: bool
) -> None:
    w(f"{indent}Inference count: {int(s['inference_count'])}\n")
    w(f"{indent}Execution count: {int(s['execution_count'])}\n")
    w(f"{indent}Successful request count: {int(s['success_count'])}\n")
    head = f"{indent}Avg request latency: {_us(s['request'])} usec (overhead "
    if totals:  # the composing models' time, as one queue and one compute figure
        compute = s["compute_input"] + s["compute_infer"] + s["compute_output"]
        w(
            f"{head}{_us(s['overhead'])} usec + queue {_us(s['queue'])} usec + "
            f"compute {_us(compute)} usec)\n"
        )
        return
    w(
        f"{head}{_us(s['overhead'])} usec + queue {_us(s['queue'])} usec + compute "
        f"input {_us(s['compute_input'])} usec + compute infer "
        f"{_us(s['compute_infer'])} usec + compute output "
        f"{_us(s['compute_output'])} usec)\n"
    )


def print_final(out: TextIO, summaries: list[Summary], streaming: bool = False) -> None:
    out.write("Inferences/Second vs. Client Average Batch Latency\n")
    for s in summaries:
        head = "Concurrency" if s.mode == "concurrency" else "Request Rate"
        out.write(
            f"{head}: {s.value:g}, throughput: {s.throughput:g} infer/sec, latency "
            f"{_us(s.stabilizing_latency)} usec\n"
        )


def csv_header(
    mode: str, percentile: int, streaming: bool, verbose: bool, metrics: bool = False
) -> list[str]:
    head = ["Concurrency" if mode == "concurrency" else "Request Rate"]
    head += [
        "Inferences/Second",
        "Client Send",
        "Network+Server Send/Recv",
        "Server Queue",
        "Server Compute Input",
        "Server Compute Infer",
        "Server Compute Output",
        "Client Recv",
        "p50 latency",
        "p90 latency",
        "p95 latency",
        "p99 latency",
    ]
    if percentile > 0 and percentile not in (50, 90, 95, 99):
        head.append(f"p{percentile} latency")
    if verbose:
        if percentile < 0:
            head.append("Avg latency")
        head += ["request/response", "response wait"]
    if streaming:
        head += [
            "Response Throughput",
            "Avg Responses Per Request",
            "Avg First Response Time",
            "Avg Inter Response Time",
        ]
    if metrics:
        head += METRIC_COLUMNS
    return head


def write_csv(
    path: Path,
    summaries: list[Summary],
    percentile: int,
    streaming: bool,
    verbose: bool,
    metrics: bool = False,
) -> None:
    if not summaries:
        return
    # perf_analyzer orders rows by increasing throughput.
    rows = sorted(summaries, key=lambda s: s.throughput)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            csv_header(summaries[0].mode, percentile, streaming, verbose, metrics)
        )
        for s in rows:
            server = s.server or {}
            row: list[Any] = [
                f"{s.value:g}",
                f"{s.throughput:g}",
                _us(s.send),
                _us(s.network),
                _us(server.get("queue", 0.0)),
                _us(server.get("compute_input", 0.0)),
                _us(server.get("compute_infer", 0.0)),
                _us(server.get("compute_output", 0.0)),
                _us(s.recv),
            ]
            row += [_us(s.percentiles[p]) for p in (50, 90, 95, 99)]
            if percentile > 0 and percentile not in (50, 90, 95, 99):
                row.append(_us(s.percentiles[percentile]))
            if verbose:
                if percentile < 0:
                    row.append(_us(s.latency_avg))
                row += [_us(s.send + s.recv), _us(s.response_wait)]
            if streaming:
                row += [
                    f"{s.response_throughput:g}",
                    f"{s.responses_per_request:g}",
                    _us(s.first_response),
                    _us(s.inter_response),
                ]
            if metrics:
                row += csv_cells(s.metrics)
            writer.writerow(row)


# The profile export's request_inputs of an OpenAI request: (its data step, the body
# it sent) -> {"payload": ..., and for a chat turn "session_id" and "delay"}.
RequestInputs = Callable[[int, str], dict[str, Any]]


class ProfileExport:
    """--profile-export-file: every request of every window, with wall-clock
    nanosecond timestamps (perf_analyzer's `experiments` layout); for the OpenAI
    service kind also what each request sent and each response said, as
    perf_analyzer writes them (genai-perf reads them)."""

    def __init__(
        self,
        model: str,
        version: str,
        protocol: str,
        service_kind: str = "triton",
        endpoint: str = "",
        request_inputs: RequestInputs | None = None,
    ) -> None:
        # The load's clock is monotonic; one offset turns it into epoch time.
        self._offset = time.time_ns() - _native.perf_now_ns()
        self._experiments: list[dict[str, Any]] = []
        self._model = model
        self._version = version
        self._protocol = protocol
        self._service_kind = service_kind
        self._endpoint = endpoint
        self._request_inputs = request_inputs

    def add(self, step: StepResult) -> None:
        requests = []
        boundaries: list[int] = []
        for window in step.all_windows:
            boundaries += [window.start_ns + self._offset, window.end_ns + self._offset]
            r = window.records
            offsets = r["response_offsets"]
            bodies = self._request_inputs is not None and "request_body" in r
            for i in range(len(r["start_ns"])):
                times = r["response_ns"][offsets[i] : offsets[i + 1]] + self._offset
                request: dict[str, Any] = {
                    "timestamp": int(r["start_ns"][i] + self._offset),
                    "sequence_id": int(r["sequence_id"][i]),
                    "response_timestamps": [int(t) for t in times],
                    "end_timestamp": int(r["end_ns"][i] + self._offset),
                    "success": bool(r["ok"][i]),
                }
                if bodies and self._request_inputs is not None:
                    request["request_inputs"] = self._request_inputs(
                        int(r["step"][i]), str(r["request_body"][i])
                    )
                    request["response_outputs"] = [
                        {"response": str(text)}
                        for text in r["response_body"][offsets[i] : offsets[i + 1]]
                    ]
                requests.append(request)
        value: float | int = (
            int(step.value) if step.mode == "concurrency" else step.value
        )
        self._experiments.append(
            {
                "experiment": {"mode": step.mode, "value": value},
                "requests": requests,
                "window_boundaries": sorted(set(boundaries)),
            }
        )

    def write(self, path: Path) -> None:
        from tritonx import __version__

        document = {
            "experiments": self._experiments,
            "version": f"tritonx-perf {__version__}",
            "service_kind": self._service_kind,
            "endpoint": self._endpoint,
            "model": self._model,
            "model_version": self._version,
            "protocol": self._protocol,
        }
        path.write_text(json.dumps(document))
