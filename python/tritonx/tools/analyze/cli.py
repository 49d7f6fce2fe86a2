"""``tritonx-analyze``: the command line.

Exit status: 0 done; 2 bad input (one line on stderr); 3 the search ran but no
candidate of some model met the constraints (report written, no config); 130
interrupted (the checkpoint keeps every measurement: rerun to resume).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from tritonx.tools.analyze.errors import AnalyzeError, Interrupts

PROG = "tritonx-analyze"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block.
        raise AnalyzeError(f"{message} (see {PROG} --help)")


def _ints(text: str) -> list[int]:
    """'1,2,4' or '1:16' (powers of two from 1 to 16)."""
    try:
        if ":" in text:
            low, high = (int(x) for x in text.split(":", 1))
            if low < 0 or high < low:
                raise ValueError
            values, v = [], max(low, 1)
            while v <= high:
                values.append(v)
                v *= 2
            return [low, *values[1:]] if low == 0 else values
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a list of integers (1,2,4 or 1:16)"
        ) from None


def _words(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        words = [w.strip().lower() for w in text.split(",") if w.strip()]
        bad = [w for w in words if w not in allowed]
        if bad or not words:
            raise argparse.ArgumentTypeError(
                f"'{text}': choose from {', '.join(allowed)}"
            )
        return words

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Search model configurations (instances, batching) for the best "
        "throughput or latency under constraints, like Triton's Model Analyzer.",
    )
    p.add_argument("-r", "--model-repository", required=True, type=Path)
    p.add_argument(
        "-m", "--model", "--profile-models", dest="models", action="append",
        required=True, help="model to analyze (repeat or comma-separate)",
    )  # fmt: skip
    g = p.add_argument_group("measuring")
    g.add_argument(
        "--perf-command",
        help="load generator taking perf_analyzer's flags and writing its CSV "
        "(default: tritonx-perf)",
    )
    g.add_argument(
        "--perf-args",
        help="extra flags for every perf run, quoted (default: "
        "'--measurement-interval 1000 --stability-percentage 25 --max-trials 6')",
    )
    g.add_argument("--shape", action="append", default=[], help="NAME:d1,d2 for perf")
    g.add_argument("-i", "--protocol", choices=["grpc", "http"], default="grpc")
    g.add_argument(
        "--concurrency", type=_ints, default=[1, 2, 4, 8, 16, 32],
        help="concurrency values per candidate (1,2,4 or 1:32; default 1:32)",
    )  # fmt: skip
    g.add_argument("--perf-timeout", type=_positive, default=300.0)
    g.add_argument("--no-early-stop", dest="early_stop", action="store_false")
    s = p.add_argument_group("search space")
    s.add_argument(
        "--mode", "--run-config-search-mode", choices=["quick", "brute"],
        default="quick",
    )  # fmt: skip
    s.add_argument("--instance-counts", type=_ints, default=[1, 2, 3, 4])
    s.add_argument(
        "--max-batch-sizes", type=_ints, default=[],
        help="default: powers of two up to the model's max_batch_size (at least 8)",
    )  # fmt: skip
    s.add_argument(
        "--dynamic-batching", type=_words(["on", "off"]), default=["on", "off"]
    )
    s.add_argument(
        "--preferred-batch-sizes", type=_words(["none", "max", "half"]),
        default=["none"], help="none, max (= max_batch_size), half",
    )  # fmt: skip
    s.add_argument("--max-queue-delays", type=_ints, default=[0], help="microseconds")
    s.add_argument("--kinds", type=_words(["cpu", "gpu"]))
    s.add_argument("--max-candidates", type=int, default=64)
    s.add_argument(
        "--concurrent",
        action="store_true",
        help="search the models together: combinations of one candidate per model, "
        "measured with load on all of them at once, throughput summed",
    )
    c = p.add_argument_group("objectives and constraints")
    c.add_argument(
        "--objective", choices=["throughput", "latency"], default="throughput"
    )
    c.add_argument("--latency-budget", type=_positive, help="p99 latency, ms")
    c.add_argument("--min-throughput", type=_positive, help="infer/s")
    c.add_argument("--max-memory", type=_positive, help="server RSS + GPU memory, MB")
    c.add_argument("--slo", help="e.g. p99=5ms: also tune the batcher delay for it")
    c.add_argument("--slo-delays", type=_ints, help="microseconds to try")
    c.add_argument("--slo-repeats", type=int, default=3)
    o = p.add_argument_group("output and server")
    o.add_argument("--output-dir", type=Path, default=Path("analyze_results"))
    o.add_argument("--output-model-repository", type=Path)
    o.add_argument("--fresh", action="store_true", help="ignore a checkpoint")
    o.add_argument(
        "--server-url",
        help="HOST:PORT of a running server's HTTP endpoint (candidates are loaded "
        "as config overrides); default: start tritonx-server",
    )
    o.add_argument("--server-grpc-url", help="its gRPC HOST:PORT (default port 8001)")
    o.add_argument(
        "--server-metrics-url",
        help="its Prometheus endpoint, for server CPU/RSS/GPU (default: HOST:8002/"
        "metrics of --server-url)",
    )
    o.add_argument(
        "--server-arg", action="append", default=[],
        help="extra tritonx-server flag (repeatable)",
    )  # fmt: skip
    o.add_argument("--server-command", help="launcher (default: python -m tritonx)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, Interrupts.handle)
    signal.signal(signal.SIGINT, Interrupts.handle)
    try:
        from tritonx.tools.analyze.run import run

        status = run(build_parser().parse_args(argv))
        Interrupts.check()  # one that came while a raise could not land
        return status
    except AnalyzeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; measurements so far are in the checkpoint, run the "
            "same command again to resume",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # the promise: one line, never a traceback
        print(f"{PROG}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def split_args(text: str | None) -> list[str] | None:
    return shlex.split(text) if text is not None else None


if __name__ == "__main__":
    raise SystemExit(main())
