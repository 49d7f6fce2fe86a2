"""perf_analyzer's two load modes beside the concurrency and request-rate sweeps.

``--fixed-schedule``: replay a recorded load. Every entry of the ``--input-data``
JSON is one request, sent once, ``timestamp`` milliseconds after the run starts (a
number, or a one-element list as perf_analyzer writes its tensors), with the entry's
other members as its inputs. The first ``--warmup-request-count`` entries are the
warm-up (sent on their own schedule first); the rest are measured as one window, as
with ``--request-count``, which the schedule's length replaces. The requests are sent
in time order whatever the file's order; requests due at the same time go in file
order. Unlike perf_analyzer, which reports windows rounded up to whole seconds, the
window ends with the last answer, so the throughput is the schedule's own rate when
the server keeps up.

``--periodic-concurrency-range start:end:step`` with ``--request-period N``: on one
gRPC stream, ``start`` requests, then ``step`` more each time every request of the
latest group has had N responses (counted as perf_analyzer counts them, an empty
FINAL flag included), until ``end`` were sent (decoupled models that stream, like an
LLM's tokens); a request that ends with fewer fails the run, in perf_analyzer's
words. Measured as one window of ``end`` requests; the profile export (required, as
by perf_analyzer) has every response's time.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonx.tools.perf.errors import PerfError
from tritonx.tools.perf.sweep import Sweep

TIMESTAMP = "timestamp"


def add_load_mode_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fixed-schedule",
        action="store_true",
        help="send each --input-data entry once, at its 'timestamp' (ms after the "
        "start)",
    )
    parser.add_argument(
        "--periodic-concurrency-range",
        default=None,
        metavar="START:END:STEP",
        help="streaming: START requests, then STEP more each time the latest ones "
        "have --request-period responses, up to END",
    )
    parser.add_argument(
        "--request-period",
        type=int,
        default=10,
        help="responses each request of the latest group needs before the next "
        "group goes (default 10)",
    )


@dataclass
class FixedSchedule:
    # (microseconds after the start, data step), per request, in file order.
    warmup: list[tuple[int, int]]
    measured: list[tuple[int, int]]

    def rate(self) -> float:
        """The measured requests' average rate over their span (requests/s)."""
        times = [us for us, _ in self.measured]
        span_s = (max(times) - min(times)) / 1e6
        return len(times) / span_s if span_s > 0 else float(len(times))

    def sweep(self) -> Sweep:
        """One step, labelled as a request rate (perf_analyzer's report does too)."""
        rate = round(self.rate(), 3)
        return Sweep("request_rate", rate, rate, 1.0, False)


def _refuse_other_modes(args: argparse.Namespace, mode: str) -> None:
    """perf_analyzer's refusal of `mode` beside another load mode (its words)."""
    given = {
        "Concurrency": args.concurrency_range,
        "RequestRate": args.request_rate_range,
        "CustomInterval": getattr(args, "request_intervals", None),
        "PeriodicConcurrency": args.periodic_concurrency_range,
    }
    for other, value in given.items():
        if value and other != mode:
            raise PerfError(f"Cannot use both {mode} and {other} inference load modes.")


def check_fixed_schedule_flags(args: argparse.Namespace) -> None:
    """perf_analyzer's refusals around --fixed-schedule (its words)."""
    if not args.fixed_schedule:
        return
    _refuse_other_modes(args, "FixedSchedule")
    files = [s for s in args.input_data if s not in ("zero", "random")]
    if not files:
        raise PerfError(
            "When using `--fixed-schedule`, you must provide a dataset using "
            "`--input-data`."
        )
    if args.request_count:
        raise PerfError(
            "Cannot specify `--request-count` when using `--fixed-schedule`. The "
            "request count will be equal to the number of requests in the input data "
            "minus the warmup request count."
        )


def _timestamp_ms(entry: Any, where: str) -> float:
    if not isinstance(entry, dict) or TIMESTAMP not in entry:
        raise PerfError(f"{where}: missing '{TIMESTAMP}' (needed by --fixed-schedule)")
    value = entry[TIMESTAMP]
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PerfError(
            f"{where}: '{TIMESTAMP}' must be a number of milliseconds >= 0, "
            f"not {json.dumps(entry[TIMESTAMP])}"
        )
    return float(value)


def read_fixed_schedule(sources: list[str], warmup_count: int) -> FixedSchedule:
    """The schedule of the --input-data JSON files, in the order their entries
    become data steps (tools/perf/inputs.py reads the same files, without the
    timestamps)."""
    times_ms: list[float] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            raise PerfError(
                f"--fixed-schedule needs JSON input data with timestamps; {source} "
                "is a directory"
            )
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # inputs.py reports what is wrong with the file
        entries = document.get("data") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            continue
        if entries and all(isinstance(e, list) for e in entries):
            entries = [step for stream in entries for step in stream]
        for index, entry in enumerate(entries):
            times_ms.append(
                _timestamp_ms(entry, f"input data file {path}, step {index}")
            )
    if warmup_count >= len(times_ms):
        raise PerfError(
            f"--fixed-schedule: the input data holds {len(times_ms)} request(s), "
            f"none left after {warmup_count} warm-up request(s)"
        )
    steps = [(round(ms * 1000), step) for step, ms in enumerate(times_ms)]
    return FixedSchedule(steps[:warmup_count], steps[warmup_count:])


def fixed_schedule_from_args(args: argparse.Namespace) -> FixedSchedule | None:
    """The run's schedule (None without --fixed-schedule); sets args.request_count
    to the measured requests, as perf_analyzer does."""
    check_fixed_schedule_flags(args)
    if not args.fixed_schedule:
        return None
    schedule = read_fixed_schedule(args.input_data, args.warmup_request_count)
    args.request_count = len(schedule.measured)
    return schedule


@dataclass
class PeriodicConcurrency:
    start: int
    end: int
    step: int
    period: int

    def sweep(self) -> Sweep:
        """One step, labelled by the concurrency it reaches."""
        return Sweep("concurrency", self.end, self.end, 1, False)

    def load_options(self) -> dict[str, object]:
        return {
            "periodic": (self.start, self.end, self.step),
            "request_period": self.period,
        }


def periodic_from_args(args: argparse.Namespace) -> PeriodicConcurrency | None:
    """--periodic-concurrency-range's settings (None without it), after
    perf_analyzer's refusals (its words); sets args.request_count to the requests it
    sends."""
    text = args.periodic_concurrency_range
    if text is None:
        return None
    _refuse_other_modes(args, "PeriodicConcurrency")
    parts = text.split(":")
    try:
        values = [int(v) for v in parts] + [1] * (3 - len(parts))
    except ValueError:
        values = []
    if len(parts) > 3 or len(values) != 3 or min(values) <= 0:
        raise PerfError(
            f"Failed to parse --periodic-concurrency-range '{text}': expected "
            "start:end:step, positive integers"
        )
    start, end, step = values
    if start > end:
        raise PerfError(
            "Failed to parse --periodic-concurrency-range. The <start> must be <= <end>."
        )
    if (end - start) % step:
        raise PerfError(
            "Failed to parse --periodic-concurrency-range. The <step> value must be a "
            "factor of the range size (<end> - <start>)."
        )
    if args.request_period <= 0:
        raise PerfError("Failed to parse --request-period. The value must be > 0")
    if not args.profile_export_file:
        raise PerfError(
            "Must provide --profile-export-file when using the "
            "--periodic-concurrency-range option."
        )
    if args.protocol != "grpc" or not args.streaming:
        raise PerfError(
            "The --periodic-concurrency-range option requires bi-directional gRPC "
            "streaming."
        )
    if args.request_count:
        raise PerfError(
            "Cannot specify --request-count with --periodic-concurrency-range: it "
            "sends <end> requests"
        )
    args.request_count = end
    return PeriodicConcurrency(start, end, step, args.request_period)
