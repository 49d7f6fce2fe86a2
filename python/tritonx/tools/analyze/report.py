"""The outputs: a self-contained HTML report (matplotlib figures inlined as SVG),
one PNG per model, a CSV of every measurement and a JSON summary."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tritonx.tools.analyze.results import (
    MEASUREMENT_FIELDS,
    CandidateResult,
    Constraints,
    Measurement,
    pareto_front,
)
from tritonx.tools.analyze.search import ModelResult
from tritonx.tools.analyze.slo import SloResult
from tritonx.tools.analyze.space import config_text

TOP = 5


def write_csv(path: Path, measurements: Iterable[Measurement]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MEASUREMENT_FIELDS)
        writer.writeheader()
        for m in measurements:
            writer.writerow(dataclasses.asdict(m))


def require_plotting() -> None:
    """Fails before the search, not after it, when matplotlib is missing."""
    _pyplot()


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        from tritonx.tools.analyze.errors import AnalyzeError

        raise AnalyzeError(
            "the report needs matplotlib: pip install 'tritonx[analyze]'"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(result: ModelResult, constraints: Constraints, objective_key: Any) -> Any:
    """Throughput against p99 latency, one curve per candidate, the Pareto front
    over all points, and (with --slo) throughput per batcher delay."""
    plt = _pyplot()
    slo = result.slo if isinstance(result.slo, SloResult) else None
    panels = 2 if slo is not None and slo.stats else 1
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(7.4 + 5.4 * (panels - 1), 4.2),
        squeeze=False,
        layout="constrained",
    )
    ax = axes[0][0]
    ranked = sorted(result.candidates, key=objective_key, reverse=True)
    points: list[Measurement] = []
    for c in ranked:
        ok = sorted(c.ok_points(), key=lambda m: m.concurrency)
        if not ok:
            continue
        points.extend(ok)
        winner = result.winner is c
        tag = " (chosen)" if result.chosen == c.candidate else " (best searched)"
        ax.plot(
            [m.p99_ms for m in ok],
            [m.throughput for m in ok],
            marker="o",
            markersize=4,
            linewidth=2.6 if winner else 1.1,
            label=c.candidate.key + (tag if winner else ""),
            zorder=3 if winner else 2,
        )
    front = pareto_front(points)
    if front:
        ax.step(
            [m.p99_ms for m in front],
            [m.throughput for m in front],
            where="post",
            color="black",
            linestyle="--",
            linewidth=1,
            label="Pareto front",
        )
    for percentile, limit in constraints.latency_limits:
        if percentile == "p99":
            ax.axvline(
                limit, color="red", linewidth=1, label=f"p99 budget {limit:g} ms"
            )
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (infer/s)")
    ax.set_title(f"{result.model}: throughput vs latency per candidate")
    ax.grid(alpha=0.3)
    if points and max(m.p99_ms for m in points) > 20 * min(m.p99_ms for m in points):
        ax.set_xscale("log")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if panels == 2 and slo is not None:
        ax2 = axes[0][1]
        xs = [str(s.delay_us) for s in slo.stats]
        means = [s.mean for s in slo.stats]
        # A delay whose every repeat failed has no throughputs: no whiskers.
        low = [s.mean - min(s.throughputs, default=s.mean) for s in slo.stats]
        high = [max(s.throughputs, default=s.mean) - s.mean for s in slo.stats]
        colors = ["tab:green" if s is slo.chosen else "tab:gray" for s in slo.stats]
        ax2.bar(xs, means, yerr=[low, high], capsize=4, color=colors)
        ax2.set_xlabel("max_queue_delay_microseconds")
        ax2.set_ylabel(f"throughput within {slo.percentile} <= {slo.limit_ms:g} ms")
        ax2.set_title("SLO: batcher delay (bars: mean, whiskers: repeats)")
        ax2.grid(alpha=0.3, axis="y")
    return fig


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.find("<svg") :]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _rows(
    result: ModelResult, constraints: Constraints, objective: str, key: Any
) -> list[dict[str, Any]]:
    front = {
        m.ident
        for m in pareto_front([m for c in result.candidates for m in c.ok_points()])
    }
    rows = []
    for rank, c in enumerate(sorted(result.candidates, key=key, reverse=True), 1):
        best = c.best(constraints, objective)
        shown = best or max(c.ok_points(), key=lambda m: m.throughput, default=None)
        why = ""
        if best is None:
            reasons = {r for m in c.measurements for r in constraints.violations(m)}
            why = "; ".join(sorted(reasons)) or "no measurement"
        rows.append(
            {
                "rank": rank,
                "result": c,
                "best": shown,
                "passes": best is not None,
                "why": why,
                "pareto": any(m.ident in front for m in c.ok_points()),
            }
        )
    return rows


def _table(rows: list[dict[str, Any]], chosen: CandidateResult | None) -> str:
    head = (
        "<tr><th>#</th><th>candidate</th><th>config</th><th>meets constraints</th>"
        "<th>concurrency</th><th>infer/s</th><th>p50 ms</th><th>p99 ms</th>"
        "<th>server CPU %</th><th>RSS MB</th><th>GPU MB</th><th>Pareto</th></tr>"
    )
    body = []
    for row in rows:
        c: CandidateResult = row["result"]
        m: Measurement | None = row["best"]
        cls = ' class="chosen"' if c is chosen else ""
        meets = "yes" if row["passes"] else f"no: {html.escape(row['why'])}"
        cells = [
            str(row["rank"]),
            f"<code>{html.escape(c.candidate.key)}</code>",
            html.escape(c.candidate.describe()),
            meets,
            str(m.concurrency) if m else "",
            _fmt(m.throughput if m else None),
            _fmt(m.p50_ms if m else None, 2),
            _fmt(m.p99_ms if m else None, 2),
            _fmt(m.cpu_percent if m else None, 0) or "n/a",
            _fmt(m.rss_mb if m else None, 0) or "n/a",
            _fmt(m.gpu_memory_mb if m else None, 0),
            "yes" if row["pareto"] else "",
        ]
        body.append(
            f'<tr data-candidate="{html.escape(c.candidate.key)}"{cls}>'
            + "".join(f"<td>{cell}</td>" for cell in cells)
            + "</tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
tr.chosen{background:#e6f4e6;font-weight:600}
pre{background:#f5f5f5;padding:1em;font-size:12px}
svg{max-width:100%;height:auto}
"""


def write_report(
    out_dir: Path,
    results: list[ModelResult],
    constraints: Constraints,
    objective: str,
    settings_text: str,
    winners: dict[str, Path | None],
) -> Path:
    """report.html (and plots/<model>.png, results.json) in out_dir."""
    plt = _pyplot()
    (out_dir / "plots").mkdir(exist_ok=True)
    sections = []
    summary: dict[str, Any] = {"objective": objective, "models": {}}
    for result in results:

        def key(c: CandidateResult) -> tuple[bool, float]:
            return c.rank_key(constraints, objective)

        fig = _figure(result, constraints, key)
        fig.savefig(out_dir / "plots" / f"{result.model}.png", dpi=80)
        svg = _svg(fig)
        plt.close(fig)
        rows = _rows(result, constraints, objective, key)
        if result.winner_config is not None:
            key_text = result.chosen.key if result.chosen else ""
            chosen = f"<p>Chosen: <code>{html.escape(key_text)}</code>"
            chosen += f", written to <code>{html.escape(str(winners.get(result.model)))}</code></p>"
            chosen += f"<pre>{html.escape(config_text(result.winner_config))}</pre>"
        elif result.part_configs:
            key_text = result.chosen.key if result.chosen else ""
            chosen = f"<p>Chosen together: <code>{html.escape(key_text)}</code>"
            chosen += f", written to <code>{html.escape(str(winners.get(result.model)))}</code></p>"
            for part, config in result.part_configs.items():
                chosen += f"<h4>{html.escape(part)}</h4><pre>{html.escape(config_text(config))}</pre>"
        else:
            chosen = "<p><b>No candidate met the constraints.</b></p>"
        slo_html = ""
        slo = result.slo if isinstance(result.slo, SloResult) else None
        if slo is not None:
            slo_html = f"<h3>SLO {slo.percentile} &le; {slo.limit_ms:g} ms</h3>"
            slo_html += f"<p>{html.escape(slo.summary)}</p>"
            if slo.stats:
                slo_html += "<table><tr><th>delay us</th><th>mean infer/s</th><th>repeats</th><th>spread</th></tr>"
                for s in slo.stats:
                    reps = ", ".join(f"{t:.1f}" for t in s.throughputs)
                    slo_html += f"<tr><td>{s.delay_us}</td><td>{s.mean:.1f}</td><td>{reps}</td><td>{s.spread:.1%}</td></tr>"
                slo_html += "</table>"
        sections.append(
            f'<section data-model="{html.escape(result.model)}">'
            f"<h2>{html.escape(result.model)}</h2>{svg}"
            f"<h3>Top configurations</h3>{_table(rows[:TOP], result.winner)}"
            f"{chosen}{slo_html}"
            f"<h3>All candidates ({len(rows)})</h3>{_table(rows, result.winner)}"
            "</section>"
        )
        summary["models"][result.model] = {
            "winner": result.chosen.key if result.chosen else None,
            "search_winner": result.winner.candidate.key if result.winner else None,
            "winner_config": str(winners.get(result.model) or ""),
            "candidates": [c.candidate.key for c in result.candidates],
            "slo": (
                {
                    "delay_us": slo.chosen.delay_us if slo.chosen else None,
                    "confidence": slo.confidence,
                    "summary": slo.summary,
                }
                if slo is not None
                else None
            ),
        }
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>tritonx-analyze report</title><style>{_STYLE}</style></head><body>"
        "<h1>tritonx-analyze report</h1>"
        f"<pre>{html.escape(settings_text)}</pre>{''.join(sections)}</body></html>"
    )
    path = out_dir / "report.html"
    path.write_text(page)
    (out_dir / "results.json").write_text(json.dumps(summary, indent=1))
    return path
