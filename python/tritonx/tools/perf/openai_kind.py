"""``--service-kind openai``: tritonx-perf against an OpenAI-compatible server
(tritonx-openai, Triton's OpenAI frontend, vLLM), as perf_analyzer's OpenAI mode
that genai-perf drives.

Each ``--input-data`` entry's ``payload`` (a JSON object, or a one-element list of
one, as perf_analyzer writes its tensors) is POSTed as is to ``--endpoint`` (e.g.
``v1/chat/completions``) over HTTP, the entries used in turn. A plain answer is one
response; a streamed one (``"stream": true``: server-sent events) gives a response
per event, each timed when its last byte arrives, so the report's time to first
response and inter-response latency are the time to first token and the time
between tokens (perf_analyzer times its libcurl reads instead, which may hold
several events). The concurrency and request-rate sweeps work as for the
``triton`` kind; there are no server-side statistics.

``--session-concurrency N`` (multi-turn chat): entries with the same
``session_id`` are one session's turns, in file order; N sessions run at a time,
each sending its turns one by one with the conversation so far (each turn's
messages are added to it and sent in their place; each answer's assistant message
is added, a streamed answer's deltas joined into one), and waiting the turn's
``delay`` milliseconds after its answer before the next turn. Every session runs
once and the whole run is one measurement. The profile export has what each
request sent (``payload``, ``session_id``, ``delay``) and each response's text.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonx.tools.perf.errors import PerfError
from tritonx.tools.perf.sweep import Sweep
from tritonx.tools.perf.transport import Transport, parse_headers


@dataclass
class OpenAIData:
    payloads: list[str] = field(default_factory=list)  # JSON bodies, file order
    session_ids: list[str | None] = field(default_factory=list)
    delays_ms: list[int | None] = field(default_factory=list)

    def sessions(self) -> list[list[int]]:
        """Payload indexes per session id, in order of first appearance."""
        groups: dict[str | None, list[int]] = {}
        for index, session in enumerate(self.session_ids):
            groups.setdefault(session, []).append(index)
        return list(groups.values())

    def request_inputs(self, step: int, body: str) -> dict[str, Any]:
        inputs: dict[str, Any] = {"payload": body}
        session = self.session_ids[step]
        if session is not None:
            inputs["session_id"] = session
        delay = self.delays_ms[step]
        if delay is not None:
            inputs["delay"] = delay
        return inputs


def add_openai_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--service-kind",
        default="triton",
        choices=["triton", "openai"],
        help="triton: KServe V2 / Triton servers; openai: an OpenAI-compatible "
        "server, the --input-data payloads POSTed to --endpoint",
    )
    parser.add_argument(
        "--endpoint",
        default="",
        help="openai: the route to POST to, e.g. v1/chat/completions",
    )
    parser.add_argument(
        "--session-concurrency",
        type=int,
        default=None,
        help="openai: run the input data's multi-turn chat sessions, this many at "
        "a time",
    )


def _one(value: Any) -> Any:
    """perf_analyzer writes each input as a list; a one-element list is its value."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _entry(entry: Any, where: str, data: OpenAIData) -> None:
    if not isinstance(entry, dict) or "payload" not in entry:
        raise PerfError(f"{where}: an OpenAI request needs a 'payload'")
    payload = _one(entry["payload"])
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise PerfError(f"{where}: 'payload' is not JSON") from None
    if not isinstance(payload, dict):
        raise PerfError(f"{where}: 'payload' must be a JSON object")
    data.payloads.append(json.dumps(payload, separators=(",", ":")))
    session = _one(entry.get("session_id"))
    data.session_ids.append(None if session is None else str(session))
    delay = _one(entry.get("delay"))
    if delay is not None and (
        isinstance(delay, bool) or not isinstance(delay, int) or delay < 0
    ):
        raise PerfError(f"{where}: 'delay' must be a whole number of ms >= 0")
    data.delays_ms.append(delay)


def read_openai_data(sources: list[str]) -> OpenAIData:
    data = OpenAIData()
    for source in sources:
        path = Path(source)
        try:
            document = json.loads(path.read_text())
        except OSError as exc:
            raise PerfError(
                f"cannot read input data {source}: {exc.strerror}"
            ) from None
        except ValueError as exc:
            raise PerfError(f"input data {source} is not JSON: {exc}") from None
        entries = document.get("data") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise PerfError(f'input data {source}: expected {{"data": [...]}}')
        for index, entry in enumerate(entries):
            _entry(entry, f"input data file {source}, entry {index}", data)
    if not data.payloads:
        raise PerfError("the input data holds no OpenAI request")
    return data


def check_openai_flags(args: argparse.Namespace) -> None:
    """perf_analyzer's refusals around the OpenAI kind (its words where it has
    them)."""
    if args.session_concurrency is not None:
        if args.service_kind != "openai":
            raise PerfError(
                "Session concurrency mode is only supported with OpenAI service kind."
            )
        if args.session_concurrency <= 0:
            raise PerfError(
                "Failed to parse --session-concurrency. Session concurrency must "
                "be > 0."
            )
        for flag, mode in (
            ("concurrency_range", "Concurrency"),
            ("request_rate_range", "RequestRate"),
            ("request_intervals", "CustomInterval"),
            ("periodic_concurrency_range", "PeriodicConcurrency"),
        ):
            if getattr(args, flag, None):
                raise PerfError(
                    f"Cannot use both {mode} and SessionConcurrency inference load "
                    "modes."
                )
    if args.service_kind != "openai":
        return
    files = [s for s in args.input_data if s not in ("zero", "random")]
    if not files:
        raise PerfError("Must supply --input-data for OpenAI service kind.")
    if not args.endpoint:
        raise PerfError(
            "Must supply --endpoint for OpenAI service kind. For example, "
            '"v1/chat/completions".'
        )
    if args.sync:
        raise PerfError(
            "Only async mode is currently supported for OpenAI service-kind"
        )
    if args.batch != 1:
        raise PerfError("Batching is not currently supported with OpenAI service-kind")
    unsupported = [
        (args.streaming, "--streaming (a payload asks for a stream itself)"),
        (args.shared_memory != "none", "--shared-memory"),
        (args.fixed_schedule, "--fixed-schedule"),
        (args.periodic_concurrency_range, "--periodic-concurrency-range"),
        (args.sequence_length is not None, "--sequence-length"),
    ]
    for given, flag in unsupported:
        if given:
            raise PerfError(f"{flag} does not apply to the OpenAI service kind")
    args.async_mode = True


def check_sessions(data: OpenAIData, concurrency: int) -> list[list[int]]:
    """The sessions to run, after perf_analyzer's checks (its words)."""
    sessions = data.sessions()
    if len(sessions) < concurrency:
        raise PerfError(
            f"The input data file contains {len(sessions)} unique session IDs, "
            "which is fewer than the required session concurrency level of "
            f"{concurrency}. Please add more unique session IDs to the file or "
            "lower the session concurrency level."
        )
    for turns in sessions:
        for index in turns[:-1]:
            if data.delays_ms[index] is None:
                raise PerfError(f"Missing 'delay' input for payload with index {index}")
    return sessions


def session_sweep(concurrency: int) -> Sweep:
    """One step, labelled by the sessions at a time."""
    return Sweep("concurrency", concurrency, concurrency, 1, False)


def run_openai(args: argparse.Namespace, transport: Transport) -> int:
    """The whole run of the OpenAI kind: the sweep's steps (or the sessions, one
    step), reported and exported as the triton kind's."""
    from tritonx import _native
    from tritonx.tools.perf.measure import (
        measure_options,
        run_step,
        started,
        warm_up,
    )
    from tritonx.tools.perf.progress import Progress
    from tritonx.tools.perf.report import (
        ProfileExport,
        Summary,
        print_final,
        print_settings,
        print_step,
        summarize,
        write_csv,
    )
    from tritonx.tools.perf.sweep import sweep_from_args

    data = read_openai_data([s for s in args.input_data if s not in ("zero", "random")])
    sessions = (
        check_sessions(data, args.session_concurrency)
        if args.session_concurrency
        else []
    )
    if sessions:
        args.request_count = len(data.payloads)  # every turn of every session, once
        if args.warmup_request_count:
            raise PerfError("--warmup-request-count does not apply to chat sessions")
    sweep = (
        session_sweep(args.session_concurrency) if sessions else sweep_from_args(args)
    )
    url = (args.url or "localhost:8000").removeprefix("http://")
    headers = list(parse_headers(args.headers).items())
    target = _native.PerfTarget(
        "http",
        url,
        args.model,
        "",
        [],
        [],
        http_headers=headers,
        endpoint=args.endpoint,
        payloads=data.payloads,
        # A session's next turn needs the answer; the export needs both.
        keep_bodies=bool(sessions) or bool(args.profile_export_file),
        **transport.target,
    )
    options = measure_options(args)  # async: check_openai_flags set it
    print_settings(args, False, sweep)
    progress = Progress()
    profile = (
        ProfileExport(
            args.model, "", "http", "openai", args.endpoint, data.request_inputs
        )
        if args.profile_export_file
        else None
    )
    summaries: list[Summary] = []
    next_value: float | None = sweep.first()
    while next_value is not None:
        value = next_value

        def make_load(max_requests: int, value: float = value) -> Any:
            load = _native.PerfLoad(
                target,
                concurrency=int(value) if sweep.mode == "concurrency" else 0,
                request_rate=float(value) if sweep.mode == "request_rate" else 0.0,
                poisson=args.request_distribution == "poisson",
                max_threads=args.max_threads
                or (4 if sweep.mode == "request_rate" else 16),
                seed=args.seed,
                async_mode=True,
                max_requests=max_requests,
                intervals_us=transport.intervals_us,
                session_concurrency=args.session_concurrency or 0,
                sessions=sessions,
                turn_delays_us=[(d or 0) * 1000 for d in data.delays_ms],
            )
            return started(load)

        if args.warmup_request_count:
            warm_up(make_load(args.warmup_request_count), args.warmup_request_count)
        progress.start_step(f"{sweep.mode} {value:g}", args.max_trials)
        begin = _native.perf_now_ns() if args.request_count else None
        load = make_load(args.request_count)
        try:
            result = run_step(
                load,
                None,
                args.model,
                "",
                options,
                sweep.mode,
                value,
                progress.update if progress.enabled else None,
                None,
                begin,
            )
        finally:
            progress.end_step()
            load.stop()
        summary = summarize(result, 1, args.percentile)
        summaries.append(summary)
        print_step(sys.stdout, summary, "http", True, args.percentile)
        sys.stdout.flush()
        if profile:
            profile.add(result)
        meets_threshold = not args.latency_threshold or (
            summary.stabilizing_latency <= args.latency_threshold * 1000
        )
        next_value = sweep.next(meets_threshold)
    print_final(sys.stdout, summaries)
    try:
        if args.csv_file:
            write_csv(
                Path(args.csv_file), summaries, args.percentile, True, args.verbose_csv
            )
        if profile and args.profile_export_file:
            profile.write(Path(args.profile_export_file))
    except OSError as exc:
        raise PerfError(f"cannot write {exc.filename}: {exc.strerror}") from None
    return 0
