"""``--slo p99=5ms``: the dynamic batcher delay that maximises throughput within a
latency objective, with how far the repeats agree.

After the search, the winning structure (instances, max_batch_size, preferred
sizes) is measured again at each candidate delay, several times over the
concurrency range. Per repeat, the delay scores the highest throughput among the
points whose latency percentile stays within the objective; the proposal is the
delay with the best mean, and the confidence says whether the repeats separate it
from the next best delay.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from tritonx.tools.analyze.errors import AnalyzeError
from tritonx.tools.analyze.results import PERCENTILES
from tritonx.tools.analyze.search import Analyzer, ModelResult
from tritonx.tools.analyze.space import Candidate

_SLO = re.compile(r"^(p50|p90|p95|p99|avg)\s*=\s*([0-9.]+)\s*(us|ms|s)?$")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}
DEFAULT_DELAYS_US = (0, 100, 250, 500, 1000, 2000, 5000, 10000, 20000)
# Repeats that differ by more than this (max - min over the mean) are noisy.
NOISY_SPREAD = 0.10


def parse_slo(text: str) -> tuple[str, float]:
    """'p99=5ms' -> ('p99', 5.0)."""
    match = _SLO.match(text.strip().lower())
    if not match or float(match.group(2)) <= 0:
        raise AnalyzeError(
            f"bad --slo '{text}': expected PERCENTILE=VALUE[us|ms|s] with a "
            f"percentile among {', '.join(PERCENTILES)}, e.g. p99=5ms"
        )
    return match.group(1), float(match.group(2)) * _UNIT_MS[match.group(3)]


@dataclass
class DelayStats:
    delay_us: int
    throughputs: list[float] = field(default_factory=list)  # per repeat
    latencies: list[float] = field(default_factory=list)  # at those points (ms)
    concurrencies: list[int] = field(default_factory=list)
    failed: int = 0  # repeats without any measurement (left out of the stats)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.throughputs) if self.throughputs else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / mean over the repeats."""
        if not self.throughputs or self.mean <= 0:
            return 0.0
        return (max(self.throughputs) - min(self.throughputs)) / self.mean


@dataclass
class SloResult:
    percentile: str
    limit_ms: float
    structure: Candidate | None
    stats: list[DelayStats] = field(default_factory=list)
    chosen: DelayStats | None = None
    confidence: str = "none"
    summary: str = ""

    @property
    def candidate(self) -> Candidate | None:
        if self.structure is None or self.chosen is None:
            return None
        return self.structure.with_delay(self.chosen.delay_us)


def _structure(result: ModelResult, analyzer: Analyzer) -> Candidate | None:
    """The candidate whose delay is tuned: the winner if it batches dynamically,
    else the best-ranked one that does, else the winner with batching turned on."""
    if result.base.max_batch_size <= 0 or result.base.HasField("sequence_batching"):
        return None
    ranked = sorted(result.candidates, key=analyzer._rank_key, reverse=True)
    for c in ranked:
        if c.candidate.dynamic and c.ok_points():
            return c.candidate
    top = ranked[0].candidate if ranked else Candidate()
    if top.default:
        groups = result.base.instance_group
        count = groups[0].count if groups and groups[0].count else 1
        return Candidate("CPU", count, result.base.max_batch_size, True)
    return Candidate(top.kind, top.instances, top.max_batch_size or 8, True)


def tune_delay(
    analyzer: Analyzer,
    result: ModelResult,
    percentile: str,
    limit_ms: float,
    delays_us: list[int],
    repeats: int,
) -> SloResult:
    slo = SloResult(percentile, limit_ms, _structure(result, analyzer))
    if slo.structure is None:
        slo.summary = "the model does not batch dynamically: no delay to tune"
        return slo
    # A delay past half the objective leaves no room for the execution itself.
    delays = [d for d in delays_us if d <= limit_ms * 1000 / 2] or [0]
    analyzer.log(
        f"model '{result.model}': SLO {percentile} <= {limit_ms:g} ms, delays "
        f"{delays} us x {repeats} repeats on {slo.structure.describe()}"
    )
    for delay in delays:
        stats = DelayStats(delay)
        for repeat in range(repeats):
            evaluated = analyzer.evaluate(
                result.model, slo.structure.with_delay(delay), "slo", repeat
            )
            if not evaluated.ok_points():
                stats.failed += 1
                continue
            within = [
                m for m in evaluated.ok_points() if m.latency(percentile) <= limit_ms
            ]
            best = max(within, key=lambda m: m.throughput, default=None)
            stats.throughputs.append(best.throughput if best else 0.0)
            stats.latencies.append(best.latency(percentile) if best else 0.0)
            stats.concurrencies.append(best.concurrency if best else 0)
        slo.stats.append(stats)
    _choose(slo)
    return slo


def _choose(slo: SloResult) -> None:
    usable = [s for s in slo.stats if s.mean > 0]
    if not usable:
        slo.summary = (
            f"no delay met {slo.percentile} <= {slo.limit_ms:g} ms at any concurrency"
        )
        return
    ranked = sorted(usable, key=lambda s: s.mean, reverse=True)
    chosen = slo.chosen = ranked[0]
    quiet = chosen.spread <= NOISY_SPREAD
    if len(ranked) > 1:
        runner = ranked[1]
        apart = min(chosen.throughputs) > max(runner.throughputs)
        lead = (chosen.mean - runner.mean) / chosen.mean
        versus = (
            f"; the next best delay, {runner.delay_us} us, is {lead:.1%} lower and "
            + ("no repeat overlaps" if apart else "their repeats overlap")
        )
    else:
        apart, versus = True, ""
    repeats = len(chosen.throughputs)
    if repeats < 2:
        slo.confidence = "low"
    elif apart and quiet:
        slo.confidence = "high"
    elif apart or quiet:
        slo.confidence = "medium"
    else:
        slo.confidence = "low"
    slo.summary = (
        f"delay {chosen.delay_us} us: {chosen.mean:.1f} infer/s within "
        f"{slo.percentile} <= {slo.limit_ms:g} ms (repeats "
        f"{min(chosen.throughputs):.1f}..{max(chosen.throughputs):.1f}, spread "
        f"{chosen.spread:.1%} over {repeats}"
        + (f", {chosen.failed} failed" if chosen.failed else "")
        + f"){versus}; confidence {slo.confidence}"
    )
