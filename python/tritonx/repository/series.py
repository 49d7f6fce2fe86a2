"""What a model's Prometheus series count, when versions of it come and go.

Triton shares one metric reporter among every live model object with the same
labels (model, version; and namespace): while a reloaded version's old object
drains, old and new count into one series, and a version that is UNLOADING keeps
its series until it is finalized. The series, totals and all, lives as long as an
object with its labels does; once none is left it is removed, and a later load
starts it again at zero.

tritonx counts in each version's core (``Model.statistics()``), so the series of a
label set is the sum over its live objects, serving or draining, plus what the
objects retired while another one lived on had counted (``MetricSeries.carried``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tritonx.repository.reports import INFERENCE_STATS_KEYS

if TYPE_CHECKING:
    from tritonx.repository.records import LoadedModel
    from tritonx.repository.repository import ModelId

# The fields of Model.statistics() behind the counter families: counts, (count,
# ns) pairs, and the map of failure reasons to counts.
COUNTED = ("inference_count", "execution_count", "failures", *INFERENCE_STATS_KEYS)

Counts = dict[str, Any]
LabelKey = tuple[str, int]  # (ModelId.key, version)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, Mapping):
        return {k: _add(a.get(k, 0), b.get(k, 0)) for k in a.keys() | b.keys()}
    if isinstance(a, (tuple, list)):
        return [_add(x, y) for x, y in zip(a, b, strict=True)]
    return a + b


def total(statistics: Iterable[Mapping[str, Any]], carried: Counts | None) -> Counts:
    """The counted fields summed over live objects' statistics and ``carried``."""
    out = carried
    for stats in statistics:
        counts = {key: stats[key] for key in COUNTED}
        out = counts if out is None else _add(out, counts)
    assert out is not None, "a series has at least one live object"
    return out


class MetricSeries:
    """The objects that stopped serving but still drain (their series stay), and
    the counts that retired objects left to their label set's series.

    Thread safety: changed on the ModelManager's event loop only. The metrics
    collector reads from other threads, so every change replaces a dict rather
    than mutating it: a reader sees the one before or the one after, whole.
    """

    def __init__(self) -> None:
        # id(loaded) -> (its model, the object): UNLOADING, or replaced by a reload.
        self.draining: dict[int, tuple[ModelId, LoadedModel]] = {}
        self.carried: dict[LabelKey, Counts] = {}

    def stopped_serving(self, model_id: ModelId, loaded: LoadedModel) -> None:
        self.draining = {**self.draining, id(loaded): (model_id, loaded)}

    def retired(self, loaded: LoadedModel, label_set_lives_on: bool) -> None:
        """``loaded`` is finalized: its final counts go to its label set's series
        if another object with those labels still serves or drains; otherwise
        the series ends (a later load starts it at zero)."""
        entry = self.draining.get(id(loaded))
        if entry is None or entry[1] is not loaded:
            return  # never served (a failed load's versions)
        draining = dict(self.draining)
        del draining[id(loaded)]
        self.draining = draining
        key = (entry[0].key, loaded.version)
        carried = dict(self.carried)
        if label_set_lives_on:
            carried[key] = total([loaded.core.statistics()], carried.get(key))
        else:
            carried.pop(key, None)
        self.carried = carried

    def draining_with(self, key: LabelKey, other_than: LoadedModel) -> bool:
        return any(
            model_id.key == key[0] and loaded.version == key[1]
            for model_id, loaded in self.draining.values()
            if loaded is not other_than
        )
