"""tritonx-perf: a load generator for KServe V2 / Triton servers with
perf_analyzer's flags, output and CSV. The load runs in C++ (csrc/perf); this
module parses flags, builds the requests, runs the measurement steps and reports.

Every failure a user can cause (flags, data files, an unknown model, a server that
cannot be reached, failing requests) ends with one `error: ...` line and exit 1
(2 for flag syntax), never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from tritonx.tools.perf.composing import WithComposing, composing_models
from tritonx.tools.perf.errors import PerfError
from tritonx.tools.perf.load_modes import (
    add_load_mode_flags,
    fixed_schedule_from_args,
    periodic_from_args,
)
from tritonx.tools.perf.openai_kind import (
    add_openai_flags,
    check_openai_flags,
    run_openai,
)
from tritonx.tools.perf.shm import (
    CudaSharedMemory,
    SystemSharedMemory,
    wire_requests,
)
from tritonx.tools.perf.sweep import add_sweep_flags, sweep_from_args
from tritonx.tools.perf.trace_flags import (
    add_trace_flags,
    apply_trace_settings,
    trace_settings,
)
from tritonx.tools.perf.transport import (
    add_transport_flags,
    parse_headers,
    transport_options,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints usage + message; one line reads better in scripts.
        self.exit(2, f"error: {message} (see tritonx-perf --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"tritonx-perf {version('tritonx')}"
    except PackageNotFoundError:  # a source tree that was never installed
        return "tritonx-perf (source tree)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="tritonx-perf",
        description="Measure throughput and latency of a model served by tritonx or "
        "Triton (perf_analyzer's flags and reports; the load is generated in C++).",
    )
    p.add_argument("-m", dest="model", required=True, help="model name")
    p.add_argument("-x", dest="version", default="", help="model version")
    p.add_argument("-u", dest="url", help="server URL (host:port)")
    p.add_argument(
        "-i",
        dest="protocol",
        default="http",
        type=str.lower,
        help="grpc or http (default http)",
    )
    p.add_argument("-b", dest="batch", type=int, default=1, help="batch size")
    p.add_argument(
        "-a",
        "--async",
        dest="async_mode",
        action="store_true",
        help="many requests in flight per worker thread (default at a request rate)",
    )
    p.add_argument(
        "--sync",
        action="store_true",
        help="one request in flight per worker thread (default for concurrency)",
    )
    p.add_argument("--concurrency-range", help="start:end:step (closed loop)")
    p.add_argument(
        "--request-rate-range", help="start:end:step in requests/s (open loop)"
    )
    p.add_argument(
        "--request-distribution", default="constant", choices=["constant", "poisson"]
    )
    p.add_argument(
        "--max-threads",
        type=int,
        default=None,
        help="worker threads at a request rate (default 4), or with --async the "
        "concurrency is spread over them (default 16)",
    )
    p.add_argument(
        "-p",
        "--measurement-interval",
        type=int,
        default=5000,
        help="window length in ms (time_windows)",
    )
    p.add_argument(
        "--measurement-mode",
        default="time_windows",
        choices=["time_windows", "count_windows"],
    )
    p.add_argument("--measurement-request-count", type=int, default=50)
    p.add_argument(
        "--request-count",
        type=int,
        default=0,
        help="measure exactly this many requests per step (one window; 0: windows "
        "until stable)",
    )
    p.add_argument(
        "--warmup-request-count",
        type=int,
        default=0,
        help="requests sent and answered before each step's measurement, not measured",
    )
    p.add_argument("-s", "--stability-percentage", type=float, default=10.0)
    p.add_argument("-r", "--max-trials", type=int, default=10)
    p.add_argument(
        "--percentile",
        type=int,
        default=-1,
        help="stabilize on this latency percentile instead of the average",
    )
    p.add_argument(
        "-l",
        "--latency-threshold",
        type=float,
        default=0.0,
        help="ms; stop the sweep once the latency exceeds it",
    )
    p.add_argument("--shape", action="append", default=[], help="NAME:d1,d2,...")
    p.add_argument(
        "--input-data",
        action="append",
        default=[],
        help="zero, random (the default), a JSON data file or a directory with a "
        "file per input; files and directories may be given more than once",
    )
    p.add_argument("-z", dest="zero_input", action="store_true", help="zero input")
    p.add_argument(
        "--data-directory",
        dest="input_data",
        action="append",
        help="deprecated: --input-data DIR",
    )
    p.add_argument("--string-length", type=int, default=128)
    p.add_argument("--string-data", default=None)
    p.add_argument("--streaming", action="store_true", help="gRPC streaming API")
    p.add_argument(
        "--sequence-length",
        type=int,
        default=None,
        help="requests per sequence (default 20, or each JSON data stream's length)",
    )
    p.add_argument("--sequence-length-variation", type=float, default=20.0)
    p.add_argument("--sequence-id-range", default=None, help="start[:end]")
    p.add_argument(
        "--num-of-sequences",
        type=int,
        default=4,
        help="concurrent sequences at a request rate",
    )
    p.add_argument(
        "--serial-sequences",
        action="store_true",
        help="at most one request in flight per sequence (always the case here)",
    )
    p.add_argument(
        "--shared-memory", default="none", choices=["none", "system", "cuda"]
    )
    p.add_argument("--output-shared-memory-size", type=int, default=102400)
    p.add_argument("-f", dest="csv_file", default=None, help="CSV report file")
    p.add_argument("--profile-export-file", default=None)
    p.add_argument(
        "-H",
        dest="headers",
        action="append",
        default=[],
        help="HTTP header 'Name:Value'",
    )
    p.add_argument(
        "--verbose-csv",
        action="store_true",
        help="CSV: also Avg latency, request/response, response wait",
    )
    p.add_argument(
        "--collect-metrics",
        action="store_true",
        help="scrape the server's Prometheus metrics during each step",
    )
    p.add_argument(
        "--metrics-url", default=None, help="default: the -u host, port 8002, /metrics"
    )
    p.add_argument("--metrics-interval", type=int, default=1000, help="ms")
    p.add_argument(
        "--input-tensor-format", default="binary", choices=["binary", "json"]
    )
    p.add_argument(
        "--output-tensor-format", default="binary", choices=["binary", "json"]
    )
    p.add_argument("-v", dest="verbose", action="count", default=0)
    add_sweep_flags(p)
    add_load_mode_flags(p)
    add_trace_flags(p)
    p.add_argument(
        "--bls-composing-models",
        default=None,
        help="name[:version],... : models the measured BLS model calls, reported "
        "beside it (an ensemble's steps are found in its config)",
    )
    add_openai_flags(p)
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("--seed", type=int, default=0, help="random data and schedule seed")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for control-plane answers",
    )
    add_transport_flags(p)
    return p


def _validate(args: argparse.Namespace) -> None:
    if args.protocol not in ("grpc", "http"):
        raise PerfError(f"unsupported protocol '{args.protocol}' (-i grpc or -i http)")
    if args.streaming and args.protocol != "grpc":
        raise PerfError("streaming is only allowed with gRPC protocol (-i grpc)")
    if args.protocol == "grpc" and "json" in (
        args.input_tensor_format,
        args.output_tensor_format,
    ):
        raise PerfError(
            "--input-tensor-format/--output-tensor-format json need -i http "
            "(gRPC tensors are always binary)"
        )
    check_openai_flags(args)
    if args.async_mode and args.sync:
        raise PerfError("cannot specify both --async and --sync")
    checks = [
        (args.measurement_interval > 0, "--measurement-interval must be > 0"),
        (args.measurement_request_count > 0, "--measurement-request-count must be > 0"),
        (args.max_trials > 0, "--max-trials must be > 0"),
        (args.stability_percentage >= 0, "--stability-percentage must be >= 0"),
        (
            args.percentile == -1 or 0 < args.percentile < 100,
            "--percentile must be between 1 and 99",
        ),
        (args.latency_threshold >= 0, "--latency-threshold must be >= 0"),
        (args.string_length >= 0, "--string-length must be >= 0"),
        (
            args.sequence_length is None or args.sequence_length > 0,
            "--sequence-length must be > 0",
        ),
        (args.max_threads is None or args.max_threads > 0, "--max-threads must be > 0"),
        (args.num_of_sequences > 0, "--num-of-sequences must be > 0"),
        (args.output_shared_memory_size > 0, "--output-shared-memory-size must be > 0"),
        (args.request_count >= 0, "--request-count must be >= 0"),
        (args.warmup_request_count >= 0, "--warmup-request-count must be >= 0"),
        (args.metrics_interval > 0, "--metrics-interval must be > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise PerfError(message)


def _sequence_ids(text: str | None) -> tuple[int, int]:
    if not text:
        return 1, 0
    parts = text.split(":")
    try:
        start = int(parts[0])
        end = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    except ValueError:
        raise PerfError(f"--sequence-id-range '{text}' must be start[:end]") from None
    if start <= 0 or (end and end <= start) or len(parts) > 2:
        raise PerfError(f"--sequence-id-range '{text}': need 0 < start < end")
    return start, end


def run(args: argparse.Namespace) -> int:
    _validate(args)
    if args.service_kind == "openai":
        args.protocol = "http"  # what the OpenAI kind speaks, whatever -i says
        return run_openai(args, transport_options(args))
    transport = transport_options(args)
    from tritonx import _native
    from tritonx.tools.perf import inputs as inp
    from tritonx.tools.perf.measure import (
        measure_options,
        run_step,
        started,
        warm_up,
    )
    from tritonx.tools.perf.metrics import MetricsCollector, report_lines
    from tritonx.tools.perf.progress import Progress
    from tritonx.tools.perf.report import (
        ProfileExport,
        Summary,
        print_final,
        print_settings,
        print_step,
        step_label,
        summarize,
        write_csv,
    )
    from tritonx.tools.perf.server_api import connect

    url = args.url or (
        "localhost:8001" if args.protocol == "grpc" else "localhost:8000"
    )
    url = url.removeprefix("http://")
    if args.protocol == "grpc":
        url = url.removeprefix("grpc://")
    headers = parse_headers(args.headers)
    shapes = inp.parse_shapes(args.shape)
    seq_start, seq_end = _sequence_ids(args.sequence_id_range)
    schedule = fixed_schedule_from_args(args)
    periodic = periodic_from_args(args)
    mode_load: dict[str, object] = {}  # the measured load's mode options
    if schedule:
        sweep, mode_load = schedule.sweep(), {"schedule_us": schedule.measured}
    elif periodic:
        sweep, mode_load = periodic.sweep(), periodic.load_options()
    else:
        sweep = sweep_from_args(args)
    tracing = trace_settings(args)
    mode = sweep.mode

    api = connect(args.protocol, url, headers, args.timeout, **transport.connect)
    shm: SystemSharedMemory | CudaSharedMemory
    try:
        shm = (
            CudaSharedMemory(api)
            if args.shared_memory == "cuda"
            else SystemSharedMemory(api)
        )
    except PerfError:
        api.close()
        raise
    try:
        try:
            metadata = api.metadata(args.model, args.version)
        except PerfError as exc:
            raise PerfError(f"failed to get model metadata: {exc}") from None
        try:
            config = api.config(args.model, args.version)
        except PerfError as exc:
            raise PerfError(f"failed to get model config: {exc}") from None
        info = inp.model_info(metadata, config, args.version)
        apply_trace_settings(api, args.model, tracing)
        composing = composing_models(config, args.bls_composing_models)
        stats_api = WithComposing(api, composing) if composing else api
        inp.check_batch(info, args.batch)
        if info.sequence and args.batch > 1:
            raise PerfError(
                "can not specify batch size > 1 when using a sequence model"
            )
        if info.decoupled and not args.streaming:
            raise PerfError(
                f"model '{args.model}' is decoupled: measure it with --streaming -i grpc"
            )
        steps, streams = inp.request_steps(
            args.input_data,
            args.zero_input,
            info,
            args.batch,
            shapes,
            args.string_length,
            args.string_data,
            args.seed,
            skip=frozenset({"timestamp"} if schedule else ()),
        )

        wire_steps, outputs = wire_requests(
            shm if args.shared_memory != "none" else None,
            steps,
            [out.name for out in info.outputs],
            args.output_shared_memory_size,
        )

        target = _native.PerfTarget(
            args.protocol,
            url,
            args.model,
            args.version,
            wire_steps,
            outputs,
            args.streaming,
            info.decoupled,
            list(headers.items()),
            json_inputs=args.input_tensor_format == "json",
            json_outputs=args.output_tensor_format == "json",
            **transport.target,
        )
        options = measure_options(args)
        # As perf_analyzer: async by default at a request rate (so --max-threads
        # does not cap the requests in flight), for sequence models (many
        # sequences in flight, one request each) and for streaming (many requests
        # on one stream); sync otherwise. --sync keeps one request per stream.
        if not args.sync and (
            mode == "request_rate" or info.sequence or args.streaming
        ):
            args.async_mode = True
        options.async_mode = args.async_mode
        collector = (
            MetricsCollector(
                args.metrics_url or f"{url.rsplit(':', 1)[0]}:8002/metrics",
                args.metrics_interval,
                args.model,
                args.version,
            )
            if args.collect_metrics
            else None
        )
        print_settings(args, info.sequence, sweep)
        progress = Progress()
        profile = (
            ProfileExport(args.model, args.version, args.protocol)
            if args.profile_export_file
            else None
        )
        summaries: list[Summary] = []
        warned_metrics = False
        next_value: float | None = sweep.first()
        while next_value is not None:
            value = next_value
            threads = args.max_threads or (4 if mode == "request_rate" else 16)
            if mode == "request_rate" and info.sequence and not args.async_mode:
                threads = args.num_of_sequences  # sync: one sequence per worker

            def make_load(
                max_requests: int,
                mode_options: dict[str, object],
                value: float = value,
                threads: int = threads,
            ) -> Any:
                load = _native.PerfLoad(
                    target,
                    concurrency=int(value) if mode == "concurrency" else 0,
                    request_rate=float(value) if mode == "request_rate" else 0.0,
                    poisson=args.request_distribution == "poisson",
                    max_threads=threads,
                    sequence_length=(args.sequence_length or 20)
                    if info.sequence
                    else 0,
                    sequence_variation=args.sequence_length_variation,
                    sequence_id_start=seq_start,
                    sequence_id_end=seq_end,
                    seed=args.seed,
                    async_mode=args.async_mode,
                    max_requests=max_requests,
                    num_sequences=args.num_of_sequences,
                    stream_lengths=streams,
                    length_from_stream=args.sequence_length is None,
                    intervals_us=transport.intervals_us,
                    **mode_options,  # type: ignore[arg-type]
                )
                return started(load)

            if args.warmup_request_count:
                warm_up(
                    make_load(
                        args.warmup_request_count,
                        {"schedule_us": schedule.warmup} if schedule else {},
                    ),
                    args.warmup_request_count,
                )
            label = "Concurrency" if mode == "concurrency" else "Request rate"
            progress.start_step(f"{label} {value:g}", args.max_trials)
            stats_before = begin = None
            if args.request_count:
                # The one window holds every request: it opens before the first.
                stats_before = stats_api.statistics(args.model, args.version)
                begin = _native.perf_now_ns()
            if collector:
                collector.start()
            load = make_load(args.request_count, mode_load)
            try:
                result = run_step(
                    load,
                    stats_api,
                    args.model,
                    args.version,
                    options,
                    mode,
                    value,
                    progress.update if progress.enabled else None,
                    stats_before,
                    begin,
                )
            finally:
                progress.end_step()
                load.stop()
            metrics = collector.stop() if collector else None
            if collector and metrics is None and not warned_metrics:
                print(f"warning: {collector.error}; metrics skipped", file=sys.stderr)
                warned_metrics = True
            summary = summarize(result, args.batch, args.percentile)
            summary.metrics = metrics
            summary.sequences = info.sequence
            summaries.append(summary)
            print_step(
                sys.stdout, summary, args.protocol, args.streaming, args.percentile
            )
            if metrics is not None:
                print("\n".join(report_lines(metrics)) + "\n")
            sys.stdout.flush()
            if profile:
                profile.add(result)
            meets_threshold = not args.latency_threshold or (
                summary.stabilizing_latency <= args.latency_threshold * 1000
            )
            if not meets_threshold:
                print(
                    f"Measured latency went over the set limit of "
                    f"{args.latency_threshold:g} msec. ({step_label(summary)})"
                )
            next_value = sweep.next(meets_threshold)
        print_final(sys.stdout, summaries)
        if args.csv_file:
            try:
                write_csv(
                    Path(args.csv_file),
                    summaries,
                    args.percentile,
                    args.streaming,
                    args.verbose_csv,
                    metrics=args.collect_metrics and args.verbose_csv,
                )
            except OSError as exc:
                raise PerfError(
                    f"cannot write {args.csv_file}: {exc.strerror}"
                ) from None
        if profile and args.profile_export_file:
            try:
                profile.write(Path(args.profile_export_file))
            except OSError as exc:
                raise PerfError(
                    f"cannot write {args.profile_export_file}: {exc.strerror}"
                ) from None
        return 0
    finally:
        shm.close()
        api.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PerfError as exc:
        sys.stdout.flush()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
