"""Model metadata and statistics in Triton's JSON shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tritonx.config import wire_datatype
from tritonx.repository.records import LoadedModel

# inference_stats keys in Triton's order; both frontends fill in the missing ones
# (perf_analyzer expects all eight, even at zero).
INFERENCE_STATS_KEYS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)


def _tensor_metadata(tensor: Any, batched: bool) -> dict[str, Any]:
    shape = [int(d) for d in tensor.dims]
    return {
        "name": tensor.name,
        "datatype": wire_datatype(tensor.data_type),
        "shape": [-1, *shape] if batched else shape,
    }


def model_metadata(loaded: LoadedModel, versions: Sequence[int]) -> dict[str, Any]:
    """KServe model metadata; batched models get a leading -1 dimension."""
    config = loaded.config
    batched = config.max_batch_size > 0
    return {
        "name": loaded.name,
        "versions": [str(v) for v in versions],
        "platform": config.platform or config.backend,
        "inputs": [_tensor_metadata(t, batched) for t in config.input],
        "outputs": [_tensor_metadata(t, batched) for t in config.output],
    }


def _duration(pair: Sequence[int] | None) -> dict[str, int]:
    count, ns = pair if pair else (0, 0)
    return {"count": int(count), "ns": int(ns)}


_RESPONSE_KEYS = (
    "compute_infer",
    "compute_output",
    "success",
    "fail",
    "empty_response",
    "cancel",
)


def _response_stats(entries: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Triton's ``response_stats``: keyed by the response index as a string, in the
    order of Triton's std::map<std::string> ("0", "1", "10", "2", ...)."""
    rendered = {
        str(index): {key: _duration(entry.get(key)) for key in _RESPONSE_KEYS}
        for index, entry in entries.items()
    }
    return dict(sorted(rendered.items()))


def model_statistics(
    name: str, version: int, stats: Mapping[str, Any]
) -> dict[str, Any]:
    """One ``model_stats`` entry from ``Model.statistics()`` (architecture §4)."""
    inference = {key: _duration(stats.get(key)) for key in INFERENCE_STATS_KEYS}
    batches = []
    for batch_size, entry in sorted(stats.get("batch_stats", {}).items()):
        count, input_ns, infer_ns, output_ns = entry
        batches.append(
            {
                "batch_size": int(batch_size),
                "compute_input": _duration((count, input_ns)),
                "compute_infer": _duration((count, infer_ns)),
                "compute_output": _duration((count, output_ns)),
            }
        )
    return {
        "name": name,
        "version": str(version),
        "last_inference": int(stats.get("last_inference", 0)),
        "inference_count": int(stats.get("inference_count", 0)),
        "execution_count": int(stats.get("execution_count", 0)),
        "inference_stats": inference,
        "response_stats": _response_stats(stats.get("response_stats", {})),
        "batch_stats": batches,
        "memory_usage": [],
    }


def _cell_lines(text: str) -> list[str]:
    # Triton's table splits a cell at its newlines (a trailing one adds no line),
    # so a multi-line failure reason takes several table rows, never breaks one.
    lines = text.split("\n")
    return lines[:-1] if text.endswith("\n") else lines


def model_table(index: Sequence[Mapping[str, Any]]) -> str:
    """Triton's startup model table ("" when no load was attempted): like Triton,
    only the versions a load was attempted for."""
    rows = [row for row in index if row.get("version")]
    if not rows:
        return ""
    table = [("Model", "Version", "Status")]
    for row in rows:
        status = str(row.get("state", ""))
        if row.get("reason"):
            status = f"{status}: {row['reason']}"
        table.append((str(row["name"]), str(row.get("version", "")), status))
    cells = [[_cell_lines(text) for text in fields] for fields in table]
    widths = [max(len(line) for cell in cells for line in cell[i]) for i in range(3)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [rule]
    for i, line_cells in enumerate(cells):
        for k in range(max(len(cell) for cell in line_cells)):
            parts = [cell[k] if k < len(cell) else "" for cell in line_cells]
            text = " | ".join(c.ljust(w) for c, w in zip(parts, widths, strict=True))
            lines.append(f"| {text} |")
        if i == 0:
            lines.append(rule)
    lines.append(rule)
    return "\n".join(lines)
