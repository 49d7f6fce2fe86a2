"""perf_analyzer's trace flags: before the first step, tritonx-perf asks the server
to trace the measured model with these settings (the server's trace API, per
model), so a run leaves a trace file of its own requests. Flags not given keep the
server's settings."""

from __future__ import annotations

import argparse

from tritonx.tools.perf.errors import PerfError
from tritonx.tools.perf.server_api import ServerApi

LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")


def add_trace_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server-side tracing of the measured model")
    group.add_argument(
        "--trace-level",
        action="append",
        default=[],
        type=str.upper,
        help="OFF, TIMESTAMPS or TENSORS (repeatable)",
    )
    group.add_argument("--trace-rate", type=int, default=None)
    group.add_argument("--trace-count", type=int, default=None, help="-1: no limit")
    group.add_argument("--log-frequency", type=int, default=None)
    group.add_argument("--trace-file", default=None, help="the server's trace file")


def trace_settings(args: argparse.Namespace) -> dict[str, list[str]]:
    """The settings the flags ask for (empty: leave the server's tracing alone)."""
    for level in args.trace_level:
        if level not in LEVELS:
            raise PerfError(
                f"--trace-level '{level}' must be OFF, TIMESTAMPS or TENSORS"
            )
    if args.trace_rate is not None and args.trace_rate <= 0:
        raise PerfError("--trace-rate must be > 0")
    if args.trace_count is not None and args.trace_count < -1:
        raise PerfError("--trace-count must be >= -1 (-1: no limit)")
    if args.log_frequency is not None and args.log_frequency < 0:
        raise PerfError("--log-frequency must be >= 0")
    settings: dict[str, list[str]] = {}
    if args.trace_level:
        settings["trace_level"] = list(dict.fromkeys(args.trace_level))
    for key in ("trace_rate", "trace_count", "log_frequency", "trace_file"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = [str(value)]
    return settings


def apply_trace_settings(
    api: ServerApi, model: str, settings: dict[str, list[str]]
) -> None:
    if not settings:
        return
    try:
        api.update_trace_settings(model, settings)
    except PerfError as exc:
        raise PerfError(f"failed to update the trace settings: {exc}") from None
