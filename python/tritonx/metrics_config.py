"""``--metrics-config``: the metrics settings of tritonserver that tritonx honours.

``MetricsConfig`` says which latency families ``metrics.TritonCollector`` renders
(counters, summaries) and with which quantiles; the command line (``cli``) and the
in-process API (``tritonx.api``) make it, ``ServerOptions`` carries it. Split out of
``metrics.py`` to keep it short.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# prometheus-cpp's Summary default in Triton's MetricReporterConfig.
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99, 0.999)

# std::stod: the longest float at the start (after blanks); the rest is ignored.
_STOD = re.compile(
    r"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class MetricsConfig:
    """tritonserver's ``--metrics-config`` settings, read as Triton 2.51 reads them.

    Only the exact value ``false`` turns ``counter_latencies`` off and only ``true``
    turns ``summary_latencies`` on (any other value, or a later ``false``, changes
    nothing); ``histogram_latencies`` has no effect on 2.51's families and unknown
    settings are ignored. ``errors``: Triton's ERROR lines for summary_quantiles
    entries it skipped.
    """

    counter_latencies: bool = True
    summary_latencies: bool = False
    summary_quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    errors: tuple[str, ...] = ()

    @classmethod
    def parse(cls, settings: Sequence[tuple[str, str]]) -> MetricsConfig:
        counters, summaries = True, False
        quantiles = DEFAULT_QUANTILES
        errors: list[str] = []
        for key, value in settings:
            if key == "counter_latencies" and value == "false":
                counters = False
            elif key == "summary_latencies" and value == "true":
                summaries = True
            elif key == "summary_quantiles":
                parsed = _parse_quantiles(value, errors)
                if parsed:
                    quantiles = parsed
        return cls(counters, summaries, quantiles, tuple(errors))


def _stod(text: str) -> float:
    match = _STOD.match(text)
    if match is None:
        raise ValueError("stod")
    return float(match.group(0))


def _parse_quantiles(value: str, errors: list[str]) -> tuple[float, ...]:
    """``<quantile>:<error>,...`` as Triton's ParseQuantiles: bad entries are
    logged and skipped. The error targets are not needed (see latency_summary.h)."""
    quantiles: list[float] = []
    # std::getline on ',': no empty entry after a trailing comma.
    parts = value.split(",")
    if parts and parts[-1] == "":
        parts.pop()
    for part in parts:
        quantile, colon, error = part.partition(":")
        if not colon:
            errors.append(
                f"Invalid option: [{part}]. No ':' delimiter found. "
                "Expected format is <quantile>:<error>"
            )
            continue
        try:
            number = _stod(quantile)
            _stod(error)
        except ValueError:
            errors.append(f"Invalid option: [{part}]. Error: stod")
            continue
        quantiles.append(number)
    return tuple(quantiles)
