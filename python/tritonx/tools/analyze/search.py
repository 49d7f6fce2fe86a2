"""The search: candidates are loaded, swept over concurrency and ranked.

One server serves every candidate of every model: a candidate is written into the
work repository as its own model (`<model>__<key>`, the model's files linked, its
config.pbtxt written), loaded through the repository API, measured, unloaded.
Against a remote server a candidate is instead the model itself reloaded with the
candidate's config as a load-API override. Measurements already in the checkpoint
are reused without loading anything.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import json_format

from tritonx.config._pb import ModelConfig
from tritonx.config.parse import config_from_json, parse_config_text
from tritonx.errors import TritonXError
from tritonx.tools.analyze.errors import AnalyzeError
from tritonx.tools.analyze.perf import PerfRunError, PerfRunner
from tritonx.tools.analyze.results import (
    CandidateResult,
    Checkpoint,
    Constraints,
    Measurement,
)
from tritonx.tools.analyze.server import HttpControl, LoadError, UsageSampler
from tritonx.tools.analyze.space import (
    Candidate,
    SpaceOptions,
    axes,
    brute_candidates,
    candidate_config,
    config_text,
    make_candidate,
)

# Model Analyzer's rule: a sweep stops once throughput grew less than this over
# the last two steps.
MIN_GAIN = 0.05


@dataclass
class SearchSettings:
    mode: str  # "brute" or "quick"
    concurrencies: list[int]
    objective: str
    constraints: Constraints
    space: SpaceOptions
    max_candidates: int
    early_stop: bool = True


@dataclass
class ModelResult:
    model: str
    base: ModelConfig
    candidates: list[CandidateResult] = field(default_factory=list)
    winner: CandidateResult | None = None
    winner_config: ModelConfig | None = None
    chosen: Candidate | None = None  # the winner's, or the SLO proposal's
    slo: object | None = None  # slo.SloResult when --slo was given
    # --concurrent: the chosen combination's config of each model.
    part_configs: dict[str, ModelConfig] = field(default_factory=dict)


def _stalled(values: list[float]) -> bool:
    """Throughput grew less than MIN_GAIN at each of the last two steps."""
    if len(values) < 3:
        return False
    a, b, c = values[-3:]
    return b < a * (1 + MIN_GAIN) and c < max(a, b) * (1 + MIN_GAIN)


class Analyzer:
    """Measures candidates of models in one repository on one server."""

    def __init__(
        self,
        settings: SearchSettings,
        control: HttpControl,
        perf: PerfRunner,
        checkpoint: Checkpoint,
        repository: Path,
        work_repository: Path | None,
        server_pid: int | None,
        log: Callable[[str], None],
        metrics_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.control = control
        self.perf = perf
        self.checkpoint = checkpoint
        self.repository = repository
        self.work = work_repository  # None: remote server, config overrides
        self.server_pid = server_pid
        self.metrics_url = metrics_url  # remote server: CPU/RSS from its metrics
        self._metrics_warned = False
        self.log = log
        self.base: dict[str, ModelConfig] = {}

    # -- models -------------------------------------------------------------

    def base_config(self, model: str) -> ModelConfig:
        """The model's own config: its config.pbtxt, else what the server made of it
        (auto-completed)."""
        if model in self.base:
            return self.base[model]
        path = self.repository / model / "config.pbtxt"
        try:
            if path.is_file() and self.work is not None:
                config = parse_config_text(path.read_text(), str(path))
            else:
                self._load(model, None)
                config = config_from_json(_json(self.control.config(model)))
        except (TritonXError, LoadError) as exc:
            raise AnalyzeError(f"model '{model}': {exc}") from exc
        config.name = model
        self.base[model] = config
        return config

    def variant_name(self, model: str, candidate: Candidate) -> str:
        if candidate.default or self.work is None:
            return model
        return f"{model}__{candidate.key}"

    def _write_variant(self, model: str, candidate: Candidate, name: str) -> None:
        assert self.work is not None
        source = self.repository / model
        target = self.work / name
        target.mkdir(parents=True, exist_ok=True)
        for entry in source.iterdir():
            if entry.name == "config.pbtxt" and not candidate.default:
                continue
            link = target / entry.name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(entry.resolve())
        if not candidate.default:
            config = candidate_config(self.base[model], candidate, name)
            (target / "config.pbtxt").write_text(config_text(config))

    def _load(self, model: str, candidate: Candidate | None) -> str:
        """Loads the candidate (None: the model as it is); returns its served name."""
        candidate = candidate or Candidate(default=True)
        name = self.variant_name(model, candidate)
        if self.work is not None:
            self._write_variant(model, candidate, name)
            self.control.load(name)
        elif candidate.default:
            self.control.load(model)
        else:
            config = candidate_config(self.base[model], candidate, model)
            self.control.load(
                model,
                json_format.MessageToJson(config, preserving_proto_field_name=True),
            )
        return name

    # -- one candidate ------------------------------------------------------

    def evaluate(
        self, model: str, candidate: Candidate, phase: str = "search", repeat: int = 0
    ) -> CandidateResult:
        """Sweeps concurrency for one candidate (cached points are reused)."""
        name = self.variant_name(model, candidate)
        result = CandidateResult(candidate, name, [])
        loaded = False

        def record(m: Measurement) -> Measurement:
            self.checkpoint.put(m)
            result.measurements.append(m)
            return m

        def blank(concurrency: int) -> Measurement:
            return Measurement(
                model, candidate.key, candidate.describe(), phase, repeat,
                concurrency, ok=False,
            )  # fmt: skip

        failed_load = self.checkpoint.get(blank(0).ident)
        if failed_load is not None:
            result.measurements.append(failed_load)
            return result
        throughputs: list[float] = []
        try:
            for concurrency in self.settings.concurrencies:
                m = self.checkpoint.get(blank(concurrency).ident)
                if m is not None:
                    result.measurements.append(m)
                else:
                    if not loaded:
                        try:
                            self._load(model, candidate)
                        except LoadError as exc:
                            m = blank(0)
                            m.error = f"load failed: {exc}"
                            self.log(f"  {candidate.key}: {m.error}")
                            record(m)
                            return result
                        loaded = True
                    m = record(
                        self._measure(model, candidate, name, concurrency, blank)
                    )
                    self._say(candidate, m)
                if not m.ok:
                    break
                throughputs.append(m.throughput)
                if self.settings.early_stop and (
                    self.settings.constraints.latency_exceeded(m)
                    or _stalled(throughputs)
                ):
                    break
        finally:
            if loaded and self.work is not None:
                self.control.unload(name)
        return result

    def _measure(
        self,
        model: str,
        candidate: Candidate,
        name: str,
        concurrency: int,
        blank: Callable[[int], Measurement],
    ) -> Measurement:
        m = blank(concurrency)
        with UsageSampler(self.server_pid, metrics_url=self.metrics_url) as sampler:
            try:
                perf = self.perf.run(name, concurrency)
            except PerfRunError as exc:
                m.error = str(exc)
                return m
        m.ok = True
        for key, value in vars(perf).items():
            setattr(m, key, round(value, 4))
        for key, value in vars(sampler.usage()).items():
            setattr(m, key, value)
        if self.metrics_url and m.cpu_percent is None and not self._metrics_warned:
            self._metrics_warned = True
            why = sampler.remote_error or (
                f"{self.metrics_url} has no process_cpu_seconds_total/"
                "process_resident_memory_bytes"
            )
            self.log(f"  server CPU and memory: n/a ({why})")
        return m

    def _say(self, candidate: Candidate, m: Measurement) -> None:
        if not m.ok:
            self.log(f"  {candidate.key} c={m.concurrency}: failed: {m.error}")
            return
        extra = (
            f", server cpu {m.cpu_percent:.0f}%"
            if m.cpu_percent is not None
            else ", server cpu n/a"
        )
        extra += f", rss {m.rss_mb:.0f} MB" if m.rss_mb is not None else ", rss n/a"
        self.log(
            f"  {candidate.key} c={m.concurrency}: {m.throughput:.1f} infer/s, "
            f"p99 {m.p99_ms:.2f} ms{extra}"
        )

    # -- the searches -------------------------------------------------------

    def analyze(self, model: str) -> ModelResult:
        base = self.base_config(model)
        result = ModelResult(model, base)
        self.log(f"model '{model}': {self.settings.mode} search")
        result.candidates.append(self.evaluate(model, Candidate(default=True)))
        if result.candidates[0].load_error:
            raise AnalyzeError(
                f"model '{model}' does not load: {result.candidates[0].load_error}"
            )
        try:
            if self.settings.mode == "brute":
                self._brute(model, base, result)
            else:
                self._quick(model, base, result)
        finally:
            if self.work is None:  # a remote server gets the model back as it was
                try:
                    self.control.load(model)
                except LoadError as exc:
                    self.log(f"model '{model}': reloading its own config failed: {exc}")
        key = self._rank_key
        passing = [c for c in result.candidates if key(c)[0]]
        if passing:
            result.winner = max(passing, key=key)
            result.chosen = result.winner.candidate
            result.winner_config = candidate_config(
                base, result.winner.candidate, model
            )
        return result

    def _rank_key(self, c: CandidateResult) -> tuple[bool, float]:
        return c.rank_key(self.settings.constraints, self.settings.objective)

    def _budget_left(self, result: ModelResult) -> bool:
        return len(result.candidates) < self.settings.max_candidates

    def _brute(self, model: str, base: ModelConfig, result: ModelResult) -> None:
        """Every candidate; along max_batch_size a sweep stops when the best
        throughput stopped growing."""
        kinds, counts, sizes, batchers = axes(base, self.settings.space)
        if not self.settings.early_stop:
            for candidate in brute_candidates(base, self.settings.space):
                if not self._budget_left(result):
                    return
                result.candidates.append(self.evaluate(model, candidate))
            return
        for kind, count, batcher in itertools.product(kinds, counts, batchers):
            bests: list[float] = []
            for size in sizes:
                if not self._budget_left(result):
                    return
                candidate = make_candidate(kind, count, size, batcher)
                evaluated = self.evaluate(model, candidate)
                result.candidates.append(evaluated)
                bests.append(max([evaluated.max_throughput(), *bests]))
                if _stalled(bests):
                    break

    def _quick(self, model: str, base: ModelConfig, result: ModelResult) -> None:
        """Hill climbing over the axes from the smallest point, moving to the best
        neighbour while it ranks higher (Model Analyzer's quick search)."""
        kinds, counts, sizes, batchers = axes(base, self.settings.space)
        lengths = (len(kinds), len(counts), len(sizes), len(batchers))
        start_batcher = next(
            (i for i, b in enumerate(batchers) if b is not None and b.dynamic), 0
        )
        seen: dict[tuple[int, ...], CandidateResult] = {}

        def visit(point: tuple[int, ...]) -> CandidateResult:
            if point not in seen:
                k, c, s, b = point
                candidate = make_candidate(kinds[k], counts[c], sizes[s], batchers[b])
                seen[point] = self.evaluate(model, candidate)
                result.candidates.append(seen[point])
            return seen[point]

        current: tuple[int, ...] = (0, 0, 0, start_batcher)
        best = visit(current)
        while self._budget_left(result):
            neighbours: list[tuple[int, ...]] = []
            for axis, length in enumerate(lengths):
                for step in (-1, 1):
                    moved_point = list(current)
                    moved_point[axis] += step
                    point = tuple(moved_point)
                    if 0 <= point[axis] < length and point not in seen:
                        neighbours.append(point)
            if not neighbours:
                return
            moved = False
            for point in neighbours:
                if not self._budget_left(result):
                    break
                candidate_result = visit(point)
                if self._better(candidate_result, best):
                    best, current, moved = candidate_result, point, True
            if not moved:
                return

    def _better(self, a: CandidateResult, b: CandidateResult) -> bool:
        (pa, sa), (pb, sb) = self._rank_key(a), self._rank_key(b)
        if pa != pb:
            return pa
        return sa > sb + abs(sb) * 0.01

    # -- output -------------------------------------------------------------

    def write_winner(self, result: ModelResult, output_repository: Path) -> Path | None:
        """The winning config (the model's files copied beside it), ready to serve;
        for a concurrent search every model's, and the repository is returned."""
        if result.part_configs:
            for model, config in result.part_configs.items():
                self._write_model(model, config, output_repository)
            return output_repository
        if result.winner_config is None:
            return None
        return self._write_model(result.model, result.winner_config, output_repository)

    def _write_model(self, model: str, config: ModelConfig, repository: Path) -> Path:
        target = repository / model
        if target.exists():
            shutil.rmtree(target)
        source = self.repository / model
        if source.is_dir():
            shutil.copytree(
                source, target, ignore=shutil.ignore_patterns("config.pbtxt")
            )
        target.mkdir(parents=True, exist_ok=True)
        (target / "config.pbtxt").write_text(config_text(config))
        return target / "config.pbtxt"


def _json(doc: dict[str, object]) -> str:
    import json

    return json.dumps(doc)
