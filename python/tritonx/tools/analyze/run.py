"""One analysis from parsed flags: check inputs, start (or reach) the server, search
each model, tune the SLO delay, write the outputs."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from tritonx.tools.analyze.errors import AnalyzeError
from tritonx.tools.analyze.perf import (
    DEFAULT_PERF_ARGS,
    PerfRunner,
    resolve_perf_command,
)
from tritonx.tools.analyze.results import Checkpoint, Constraints
from tritonx.tools.analyze.server import (
    NVML,
    HttpControl,
    LocalServer,
    RemoteServer,
)
from tritonx.tools.analyze.space import SpaceOptions, candidate_config

NO_WINNER = 3


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _models(args: argparse.Namespace) -> list[str]:
    names = [n.strip() for item in args.models for n in item.split(",") if n.strip()]
    if not names:
        raise AnalyzeError("no model named (-m)")
    return list(dict.fromkeys(names))


def _check_inputs(args: argparse.Namespace, models: list[str]) -> None:
    repo: Path = args.model_repository
    if args.server_url is None:
        if not repo.is_dir():
            raise AnalyzeError(f"model repository {repo} is not a directory")
        for model in models:
            if not (repo / model).is_dir():
                raise AnalyzeError(
                    f"unknown model '{model}': no directory {repo / model}"
                )
    if any(c <= 0 for c in args.concurrency) or not args.concurrency:
        raise AnalyzeError("--concurrency values must be at least 1")
    if any(n <= 0 for n in args.instance_counts) or not args.instance_counts:
        raise AnalyzeError("--instance-counts values must be at least 1")
    if any(n <= 0 for n in args.max_batch_sizes):
        raise AnalyzeError("--max-batch-sizes values must be at least 1")
    if any(d < 0 for d in args.max_queue_delays + (args.slo_delays or [])):
        raise AnalyzeError("queue delays cannot be negative")
    if args.concurrent and len(models) < 2:
        raise AnalyzeError("--concurrent needs at least two models (-m a,b)")
    if args.concurrent and args.slo:
        raise AnalyzeError("--slo tunes one model's batcher: not with --concurrent")
    if args.max_candidates < 1 or args.slo_repeats < 1:
        raise AnalyzeError("--max-candidates and --slo-repeats must be at least 1")
    for shape in args.shape:
        name, _, dims = shape.partition(":")
        if not name or not dims or not all(d.isdigit() for d in dims.split(",")):
            raise AnalyzeError(f"bad --shape '{shape}': expected NAME:d1,d2")


def _constraints(
    args: argparse.Namespace,
) -> tuple[Constraints, tuple[str, float] | None]:
    from tritonx.tools.analyze.slo import parse_slo

    constraints = Constraints(
        min_throughput=args.min_throughput, max_memory_mb=args.max_memory
    )
    if args.latency_budget is not None:
        constraints.latency_limits.append(("p99", args.latency_budget))
    slo = parse_slo(args.slo) if args.slo else None
    if slo is not None:
        constraints.latency_limits.append(slo)
    return constraints, slo


def _settings_text(args: argparse.Namespace, argv_perf: list[str]) -> str:
    return "\n".join(
        [
            f"repository: {args.model_repository}",
            f"search: {args.mode}, objective {args.objective}, concurrency "
            f"{args.concurrency}",
            f"constraints: latency budget {args.latency_budget} ms, min throughput "
            f"{args.min_throughput}, max memory {args.max_memory} MB, slo {args.slo}",
            f"perf: {shlex.join(argv_perf)}",
        ]
    )


def run(args: argparse.Namespace) -> int:
    from tritonx.tools.analyze.concurrent import ConcurrentSearch
    from tritonx.tools.analyze.report import require_plotting, write_csv, write_report
    from tritonx.tools.analyze.search import Analyzer, SearchSettings
    from tritonx.tools.analyze.slo import DEFAULT_DELAYS_US, tune_delay

    models = _models(args)
    _check_inputs(args, models)
    constraints, slo = _constraints(args)
    perf_command = resolve_perf_command(args.perf_command)
    require_plotting()
    perf_args = (
        shlex.split(args.perf_args)
        if args.perf_args is not None
        else list(DEFAULT_PERF_ARGS)
    )
    for shape in args.shape:
        perf_args += ["--shape", shape]
    kinds = [k.upper() for k in args.kinds] if args.kinds else ["CPU"]
    if not args.kinds and NVML.device_count() > 0:
        kinds.append("GPU")
    space = SpaceOptions(
        instance_counts=sorted(set(args.instance_counts)),
        max_batch_sizes=args.max_batch_sizes,
        batching=args.dynamic_batching,
        preferred=args.preferred_batch_sizes,
        delays_us=sorted(set(args.max_queue_delays)),
        kinds=kinds,
    )
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    output_repo: Path = args.output_model_repository or out / "best_models"
    repository = args.model_repository.resolve()
    checkpoint = Checkpoint(
        out / "checkpoint.json",
        {
            "repository": str(repository),
            "perf_command": perf_command,
            "perf_args": perf_args,
            "protocol": args.protocol,
            "server": args.server_url or "local",
            "server_args": args.server_arg,
        },
        args.fresh,
    )
    if checkpoint.resumed:
        _log(f"resuming: {checkpoint.resumed} measurements from {checkpoint.path}")
    server: LocalServer | None = None
    work: Path | None = None
    metrics_url: str | None = None
    if args.server_url is None:
        work = (out / "work_repository").resolve()
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        launcher = shlex.split(args.server_command) if args.server_command else None
        server = LocalServer(
            launcher, work, args.server_arg, out / "server.log", args.protocol
        )
        _log("starting tritonx-server (explicit model control)")
        server.start()
        assert server.control is not None
        control: HttpControl = server.control
        perf_url = server.url
    else:
        host = args.server_url.split("://")[-1].rsplit(":", 1)[0]
        grpc_url = args.server_grpc_url or f"{host}:8001"
        perf_url = args.server_url if args.protocol == "http" else grpc_url
        control = RemoteServer(args.server_url, perf_url).connect()
        metrics_url = args.server_metrics_url or f"{host}:8002/metrics"
    perf = PerfRunner(
        perf_command, perf_url, args.protocol, perf_args, args.perf_timeout
    )
    settings = SearchSettings(
        args.mode,
        sorted(set(args.concurrency)),
        args.objective,
        constraints,
        space,
        args.max_candidates,
        args.early_stop,
    )
    analyzer = Analyzer(
        settings,
        control,
        perf,
        checkpoint,
        repository,
        work,
        server.pid if server else None,
        _log,
        metrics_url,
    )
    results = []
    together = ConcurrentSearch(analyzer, models) if args.concurrent else None
    try:
        if together is not None:
            results.append(together.run())
        for model in [] if together is not None else models:
            result = analyzer.analyze(model)
            if slo is not None:
                delays = args.slo_delays or list(DEFAULT_DELAYS_US)
                result.slo = tuned = tune_delay(
                    analyzer,
                    result,
                    slo[0],
                    slo[1],
                    sorted(set(delays)),
                    args.slo_repeats,
                )
                _log(f"model '{model}': SLO: {tuned.summary}")
                if tuned.candidate is not None:
                    result.chosen = tuned.candidate
                    result.winner_config = candidate_config(
                        result.base, tuned.candidate, model
                    )
            results.append(result)
    finally:
        perf.kill()
        if together is not None:
            together.kill()
        if server is not None:
            server.stop()
    winners = {r.model: analyzer.write_winner(r, output_repo) for r in results}
    write_csv(out / "measurements.csv", checkpoint.measurements.values())
    report = write_report(
        out,
        results,
        constraints,
        args.objective,
        _settings_text(args, [*perf_command, *perf_args]),
        winners,
    )
    missing = []
    for result in results:
        path = winners[result.model]
        if path is None:
            missing.append(result.model)
            continue
        chosen = result.chosen.describe() if result.chosen else "?"
        print(f"{result.model}: {chosen} -> {path}")
    print(f"report: {report}")
    if missing:
        raise AnalyzeError(
            f"no candidate of {', '.join(missing)} met the constraints "
            f"({_describe(constraints)}); see {report}",
            NO_WINNER,
        )
    return 0


def _describe(constraints: Constraints) -> str:
    parts = [f"{p} <= {v:g} ms" for p, v in constraints.latency_limits]
    if constraints.min_throughput is not None:
        parts.append(f"throughput >= {constraints.min_throughput:g}/s")
    if constraints.max_memory_mb is not None:
        parts.append(f"memory <= {constraints.max_memory_mb:g} MB")
    return ", ".join(parts) or "none"
