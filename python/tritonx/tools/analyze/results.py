"""Measurements, constraints, ranking, and the checkpoint that makes a search
resumable."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonx.tools.analyze.errors import AnalyzeError, Interrupts
from tritonx.tools.analyze.space import Candidate

PERCENTILES = ("p50", "p90", "p95", "p99", "avg")


@dataclass
class Measurement:
    """One perf run: a candidate at one concurrency (one repeat of it)."""

    model: str
    candidate: str  # Candidate.key
    config: str  # Candidate.describe()
    phase: str  # "search" or "slo"
    repeat: int
    concurrency: int  # 0: the candidate did not load
    ok: bool
    error: str = ""
    throughput: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    avg_ms: float = 0.0
    queue_ms: float = 0.0
    compute_ms: float = 0.0
    cpu_percent: float | None = None
    rss_mb: float | None = None
    gpu_memory_mb: float | None = None
    gpu_util_percent: float | None = None

    @property
    def ident(self) -> str:
        return f"{self.model}|{self.candidate}|{self.phase}|{self.repeat}|{self.concurrency}"

    def latency(self, percentile: str) -> float:
        return float(getattr(self, f"{percentile}_ms"))

    def memory_mb(self) -> float | None:
        if self.rss_mb is None and self.gpu_memory_mb is None:
            return None
        return (self.rss_mb or 0.0) + (self.gpu_memory_mb or 0.0)


MEASUREMENT_FIELDS = [f.name for f in dataclasses.fields(Measurement)]


@dataclass
class Constraints:
    """Model Analyzer's constraints; a measurement meets them or says why not."""

    latency_limits: list[tuple[str, float]] = field(default_factory=list)
    min_throughput: float | None = None
    max_memory_mb: float | None = None

    def violations(self, m: Measurement) -> list[str]:
        if not m.ok:
            return [m.error or "failed"]
        out = []
        for percentile, limit in self.latency_limits:
            if m.latency(percentile) > limit:
                out.append(
                    f"{percentile} {m.latency(percentile):.2f} ms > {limit:g} ms"
                )
        if self.min_throughput is not None and m.throughput < self.min_throughput:
            out.append(f"throughput {m.throughput:.1f}/s < {self.min_throughput:g}/s")
        memory = m.memory_mb()
        cap = self.max_memory_mb
        if cap is not None and memory is not None and memory > cap:
            out.append(f"memory {memory:.0f} MB > {cap:g} MB")
        return out

    def latency_exceeded(self, m: Measurement) -> bool:
        return any(m.latency(p) > limit for p, limit in self.latency_limits)


def score(m: Measurement, objective: str) -> float:
    """Higher is better."""
    return m.throughput if objective == "throughput" else -m.p99_ms


@dataclass
class CandidateResult:
    candidate: Candidate
    name: str  # the model name it was served under
    measurements: list[Measurement]

    @property
    def load_error(self) -> str:
        for m in self.measurements:
            if m.concurrency == 0:
                return m.error
        return ""

    def ok_points(self) -> list[Measurement]:
        return [m for m in self.measurements if m.ok]

    def best(self, constraints: Constraints, objective: str) -> Measurement | None:
        """The best point that meets the constraints, if any."""
        passing = [m for m in self.ok_points() if not constraints.violations(m)]
        return max(passing, key=lambda m: score(m, objective), default=None)

    def rank_key(self, constraints: Constraints, objective: str) -> tuple[bool, float]:
        """Passing candidates first, then by their best point's objective."""
        best = self.best(constraints, objective)
        if best is not None:
            return True, score(best, objective)
        points = self.ok_points()
        if not points:
            return False, -math.inf
        return False, max(score(m, objective) for m in points)

    def max_throughput(self) -> float:
        return max((m.throughput for m in self.ok_points()), default=0.0)


def pareto_front(points: list[Measurement]) -> list[Measurement]:
    """Points no other point beats on both throughput and p99, by latency."""
    front: list[Measurement] = []
    for m in sorted(points, key=lambda m: (m.p99_ms, -m.throughput)):
        if not front or m.throughput > front[-1].throughput:
            front.append(m)
    return front


class Checkpoint:
    """Every measurement so far, rewritten atomically after each one.

    Only settings that change what a measurement means (repository, perf command
    and flags, protocol, server flags) must match for a resume; constraints and the
    search space may change, and measurements already taken are reused."""

    def __init__(self, path: Path, fingerprint: dict[str, Any], fresh: bool) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.measurements: dict[str, Measurement] = {}
        self.resumed = 0
        if path.is_file() and not fresh:
            self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
            stored = doc["fingerprint"]
            rows = doc["measurements"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AnalyzeError(
                f"unreadable checkpoint {self.path}; pass --fresh to start over"
            ) from exc
        if stored != self.fingerprint:
            changed = sorted(
                k
                for k in set(stored) | set(self.fingerprint)
                if stored.get(k) != self.fingerprint.get(k)
            )
            raise AnalyzeError(
                f"checkpoint {self.path} was taken with other measurement settings "
                f"({', '.join(changed)}); pass --fresh to start over"
            )
        for row in rows:
            m = Measurement(**{k: row[k] for k in MEASUREMENT_FIELDS if k in row})
            self.measurements[m.ident] = m
        self.resumed = len(self.measurements)

    def get(self, ident: str) -> Measurement | None:
        return self.measurements.get(ident)

    def put(self, m: Measurement) -> None:
        self.measurements[m.ident] = m
        self.save()
        Interrupts.check()  # stop at the boundary if a raise was swallowed

    def save(self) -> None:
        doc = {
            "fingerprint": self.fingerprint,
            "measurements": [dataclasses.asdict(m) for m in self.measurements.values()],
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.path)
