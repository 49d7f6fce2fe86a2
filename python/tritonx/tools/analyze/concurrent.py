"""--concurrent: several models of a repository searched together, as Model
Analyzer's concurrent mode (--run-config-profile-models-concurrently-enable) does.

A combination gives every model one candidate; all of them are loaded at once and
measured under load on all of them at the same time (one perf command per model,
run in parallel, each at the same concurrency), so what one model's instances take
from the CPUs the others feel. The combination's throughput is the sum of the
models' (the objective Model Analyzer sums), its latencies the worst model's, and a
constraint holds when it holds for every model. Combinations are walked from the
models' own configs outwards (the sum of the candidates' positions in each model's
brute-search order grows), up to --max-candidates; each model's measurements are
kept too (phase `concurrent` in measurements.csv).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tritonx.tools.analyze.errors import AnalyzeError
from tritonx.tools.analyze.perf import PerfResult, PerfRunError, PerfRunner
from tritonx.tools.analyze.results import CandidateResult, Measurement
from tritonx.tools.analyze.search import Analyzer, ModelResult, _stalled
from tritonx.tools.analyze.server import LoadError, UsageSampler
from tritonx.tools.analyze.space import Candidate, brute_candidates, candidate_config


@dataclass(frozen=True)
class Combo(Candidate):
    """One candidate per model, measured together."""

    parts: tuple[tuple[str, Candidate], ...] = ()

    @property
    def key(self) -> str:
        return "+".join(f"{model}.{c.key}" for model, c in self.parts)

    def describe(self) -> str:
        return "; ".join(f"{model}: {c.describe()}" for model, c in self.parts)


def combo_order(lengths: list[int], limit: int) -> list[tuple[int, ...]]:
    """Index tuples into each model's candidate list, nearest the models' own
    configs (index 0 each) first, at most `limit` of them."""
    points = itertools.product(*(range(n) for n in lengths))
    return sorted(points, key=lambda p: (sum(p), p))[:limit]


class ConcurrentSearch:
    """Thread-safety: one search at a time; its perf runs are parallel threads,
    each with its own PerfRunner. Ownership: borrows the Analyzer (server control,
    checkpoint, log)."""

    def __init__(self, analyzer: Analyzer, models: list[str]) -> None:
        self.analyzer = analyzer
        self.models = models
        self.name = "+".join(models)
        perf = analyzer.perf
        self.runners = {
            m: PerfRunner(
                perf.command, perf.url, perf.protocol, perf.extra_args, perf.timeout_s
            )
            for m in models
        }

    def kill(self) -> None:
        for runner in self.runners.values():
            runner.kill()

    def run(self) -> ModelResult:
        a = self.analyzer
        bases = {m: a.base_config(m) for m in self.models}
        lists = [
            [Candidate(default=True), *brute_candidates(bases[m], a.settings.space)]
            for m in self.models
        ]
        result = ModelResult(self.name, bases[self.models[0]])
        a.log(f"models {', '.join(self.models)}: concurrent search")
        order = combo_order([len(x) for x in lists], a.settings.max_candidates)
        try:
            for point in order:
                parts = tuple(
                    (m, lists[i][j])
                    for i, (m, j) in enumerate(zip(self.models, point, strict=True))
                )
                combo = Combo(default=all(c.default for _, c in parts), parts=parts)
                evaluated = self.evaluate(combo)
                result.candidates.append(evaluated)
                if combo.default and evaluated.load_error:
                    raise AnalyzeError(
                        f"models {self.name} do not load together: "
                        f"{evaluated.load_error}"
                    )
        finally:
            if a.work is None:  # a remote server gets its models back as they were
                for model in self.models:
                    try:
                        a.control.load(model)
                    except LoadError as exc:
                        a.log(
                            f"model '{model}': reloading its own config failed: {exc}"
                        )
        passing = [c for c in result.candidates if a._rank_key(c)[0]]
        if passing:
            result.winner = max(passing, key=a._rank_key)
            chosen = result.winner.candidate
            assert isinstance(chosen, Combo)
            result.chosen = chosen
            result.part_configs = {
                m: candidate_config(bases[m], c, m) for m, c in chosen.parts
            }
        return result

    def evaluate(self, combo: Combo) -> CandidateResult:
        a = self.analyzer
        names = {m: a.variant_name(m, c) for m, c in combo.parts}
        result = CandidateResult(combo, self.name, [])

        def blank(
            concurrency: int, model: str = "", phase: str = "search"
        ) -> Measurement:
            return Measurement(
                model or self.name, combo.key, combo.describe(), phase, 0,
                concurrency, ok=False,
            )  # fmt: skip

        failed_load = a.checkpoint.get(blank(0).ident)
        if failed_load is not None:
            result.measurements.append(failed_load)
            return result
        loaded: list[str] = []
        throughputs: list[float] = []
        try:
            for concurrency in a.settings.concurrencies:
                m = a.checkpoint.get(blank(concurrency).ident)
                if m is None:
                    if not loaded:
                        try:
                            for model, candidate in combo.parts:
                                loaded.append(a._load(model, candidate))
                        except LoadError as exc:
                            m = blank(0)
                            m.error = f"load failed: {exc}"
                            a.log(f"  {combo.key}: {m.error}")
                            a.checkpoint.put(m)
                            result.measurements.append(m)
                            return result
                    m = self._measure(combo, names, concurrency, blank)
                    a.checkpoint.put(m)
                    a._say(combo, m)
                result.measurements.append(m)
                if not m.ok:
                    break
                throughputs.append(m.throughput)
                if a.settings.early_stop and (
                    a.settings.constraints.latency_exceeded(m) or _stalled(throughputs)
                ):
                    break
        finally:
            if a.work is not None:
                for name in loaded:
                    a.control.unload(name)
        return result

    def _measure(
        self,
        combo: Combo,
        names: dict[str, str],
        concurrency: int,
        blank: Callable[..., Measurement],
    ) -> Measurement:
        a = self.analyzer
        outcomes: dict[str, PerfResult | str] = {}

        def one(model: str) -> None:
            try:
                outcomes[model] = self.runners[model].run(names[model], concurrency)
            except PerfRunError as exc:
                outcomes[model] = str(exc)

        total = blank(concurrency)
        with UsageSampler(a.server_pid, metrics_url=a.metrics_url) as sampler:
            threads = [threading.Thread(target=one, args=(m,)) for m in self.models]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        errors = [f"{m}: {o}" for m, o in outcomes.items() if isinstance(o, str)]
        if errors:
            total.error = "; ".join(errors)
            return total
        usage = vars(sampler.usage())
        perfs = [
            o for o in (outcomes[m] for m in self.models) if isinstance(o, PerfResult)
        ]
        for model, perf in zip(self.models, perfs, strict=True):
            part = blank(concurrency, model, "concurrent")
            part.ok = True
            for key, value in vars(perf).items():
                setattr(part, key, round(value, 4))
            a.checkpoint.put(part)
        total.ok = True
        total.throughput = round(sum(p.throughput for p in perfs), 4)
        for key in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms", "queue_ms"):
            setattr(total, key, round(max(getattr(p, key) for p in perfs), 4))
        total.compute_ms = round(max(p.compute_ms for p in perfs), 4)
        for key, value in usage.items():
            setattr(total, key, value)
        return total
