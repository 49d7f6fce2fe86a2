"""Which load levels a tritonx-perf run measures, in which order: perf_analyzer's
search over a concurrency or request-rate range.

* Linear (the default): start, start + step, ... up to end; a step whose latency
  goes over ``--latency-threshold`` is the last one. An end of 0 means no end: the
  sweep goes on until the latency threshold stops it (so one is then required).
* ``--binary-search``: measure start (over the threshold: done), then end (within
  it: done), then halve the interval between the last value within the threshold
  and the first one over it until it is no wider than step, which is the search's
  precision. The result is the measurements along that path, in order.
* The deprecated ``-t N`` (a concurrency), ``-c M`` and ``-d`` (a sweep from N up
  to M) read as ``--concurrency-range N[:M]``, as perf_analyzer reads them.

``Sweep.next(meets_threshold)`` gives the next value to measure, or None when the
search is over; a sweep never depends on anything but the threshold answers it is
given, so tests can drive it without a server.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tritonx.tools.perf.errors import PerfError

# perf_analyzer's "no end" for a range, and its cap on a linear sweep without one
# (a run with a latency threshold that is never reached stops here).
NO_LIMIT = 0


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--binary-search",
        action="store_true",
        help="binary search of the range for the highest load within "
        "--latency-threshold (step is the precision)",
    )
    deprecated = parser.add_argument_group(
        "deprecated perf_analyzer options (use --concurrency-range)"
    )
    deprecated.add_argument(
        "-t", dest="concurrent_requests", type=int, default=None, help="concurrency"
    )
    deprecated.add_argument(
        "-c", dest="max_concurrency", type=int, default=None, help="with -d: the end"
    )
    deprecated.add_argument(
        "-d",
        dest="dynamic_concurrency",
        action="store_true",
        help="sweep from -t up to -c",
    )


@dataclass
class Sweep:
    mode: str  # "concurrency" or "request_rate"
    start: float
    end: float  # NO_LIMIT: until the latency threshold stops it
    step: float
    binary: bool
    _low: float = 0.0  # binary: the highest value known within the threshold
    _high: float = 0.0  # binary: the lowest value known over it
    _phase: str = "start"  # binary: the value measured last was start, end or a middle
    _last: float | None = None

    def first(self) -> float:
        self._last = self.start
        self._phase = "start"
        return self.start

    def next(self, meets_threshold: bool) -> float | None:
        """The value after the one measured last, whose latency was within the
        threshold (or there is none) if ``meets_threshold``."""
        if self._last is None:
            raise RuntimeError("Sweep.next before Sweep.first")
        value = (
            self._next_binary(self._last, meets_threshold)
            if self.binary
            else self._next_linear(self._last, meets_threshold)
        )
        self._last = value
        return value

    def _next_linear(self, last: float, meets_threshold: bool) -> float | None:
        value = last + self.step
        if not meets_threshold or (self.end != NO_LIMIT and value > self.end + 1e-9):
            return None
        return int(value) if self.mode == "concurrency" else value

    def _next_binary(self, last: float, meets_threshold: bool) -> float | None:
        if self._phase == "start":
            # Over the threshold at the start: nothing in the range is within it.
            if not meets_threshold or self.end == self.start:
                return None
            self._low, self._phase = self.start, "end"
            return self.end
        if self._phase == "end":
            if meets_threshold:
                return None  # the whole range is within it
            self._high, self._phase = self.end, "bisect"
        elif meets_threshold:
            self._low = last
        else:
            self._high = last
        if self._high - self._low <= self.step:
            return None
        middle = (self._low + self._high) / 2
        return int(middle) if self.mode == "concurrency" else middle


def _parse_range(text: str, flag: str, integer: bool) -> tuple[float, float, float]:
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise PerfError(f"{flag} '{text}' must be start[:end[:step]]")
    try:
        values = [int(v) if integer else float(v) for v in parts]
    except ValueError:
        kind = "integers" if integer else "numbers"
        raise PerfError(
            f"{flag} '{text}': start, end and step must be {kind}"
        ) from None
    start = values[0]
    end = values[1] if len(values) > 1 else start
    step = values[2] if len(values) > 2 else 1
    if start <= 0 or step <= 0 or (end != NO_LIMIT and end < start):
        raise PerfError(
            f"{flag} '{text}': need 0 < start <= end (or end 0: no end) and step > 0"
        )
    return start, end, step


def sweep_from_args(args: argparse.Namespace) -> Sweep:
    """The run's sweep, after the flag combinations perf_analyzer refuses."""
    deprecated = (
        args.concurrent_requests is not None
        or args.max_concurrency is not None
        or args.dynamic_concurrency
    )
    if deprecated and args.concurrency_range:
        raise PerfError("can not use deprecated options with --concurrency-range")
    if deprecated and args.request_rate_range:
        raise PerfError("can not use concurrency options with --request-rate-range")
    if args.concurrency_range and args.request_rate_range:
        raise PerfError(
            "cannot specify both --concurrency-range and --request-rate-range"
        )
    if args.request_rate_range:
        mode = "request_rate"
        start, end, step = _parse_range(
            args.request_rate_range, "--request-rate-range", integer=False
        )
    elif deprecated:
        mode = "concurrency"
        start = args.concurrent_requests if args.concurrent_requests is not None else 1
        if start <= 0:
            raise PerfError("The start of the search range must be > 0")
        end = start
        if args.dynamic_concurrency:
            end = args.max_concurrency if args.max_concurrency is not None else NO_LIMIT
            if end != NO_LIMIT and end < start:
                raise PerfError("-c (maximum concurrency) must be >= -t")
        step = 1
    else:
        mode = "concurrency"
        start, end, step = _parse_range(
            args.concurrency_range or "1", "--concurrency-range", integer=True
        )
    if end == NO_LIMIT and not args.latency_threshold:
        raise PerfError(
            "The end of the search range and the latency limit can not be both 0 "
            "(or 0.0) simultaneously"
        )
    if args.binary_search:
        if end == NO_LIMIT:
            raise PerfError(
                "The end of the range can not be 0 (or 0.0) for binary search mode."
            )
        if not args.latency_threshold:
            raise PerfError(
                "The latency threshold can not be 0 for binary search mode."
            )
    return Sweep(mode, start, end, step, args.binary_search)
