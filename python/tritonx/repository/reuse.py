"""What a reload of a serving model reuses (Triton's "update" of a version): a
READY version whose files did not change since its load (``unchanged``), not
served from a load's files, is

* kept as it is when its config is the new one apart from ``version_policy``
  (which says what to serve, not how): no new initialize, statistics and
  readiness untouched, the config it was loaded with kept, as in Triton;
* updated in place when the configs differ only in ``instance_group`` (and the
  version policy) and instance_update.can_update_in_place allows it.

Every other selected version is built again."""

from __future__ import annotations

from dataclasses import dataclass, field

from tritonx.config import ModelConfig
from tritonx.errors import TritonXError
from tritonx.repository.instance_update import can_update_in_place
from tritonx.repository.records import READY, LoadedModel, ModelRecord


@dataclass
class Reuse:
    """Serving versions a reload reuses, by version."""

    kept: dict[int, LoadedModel] = field(default_factory=dict)
    updated: dict[int, LoadedModel] = field(default_factory=dict)


def _same_apart_from(old: ModelConfig, new: ModelConfig, *fields: str) -> bool:
    if old == new:
        return True
    old_rest, new_rest = type(old)(), type(new)()
    old_rest.CopyFrom(old)
    new_rest.CopyFrom(new)
    for name in fields:
        old_rest.ClearField(name)
        new_rest.ClearField(name)
    return bool(old_rest == new_rest)


def reused_versions(
    record: ModelRecord,
    config: ModelConfig,
    unchanged: frozenset[int],
    stage_error: TritonXError | None,
) -> Reuse:
    """The versions of ``record`` a reload to ``config`` keeps or updates."""
    reuse = Reuse()
    if stage_error is not None or record.override is not None:
        return reuse
    for version in unchanged:
        slot = record.versions.get(version)
        loaded = slot.loaded if slot is not None else None
        if slot is None or slot.state != READY or loaded is None:
            continue
        # Triton compares the configs it reads, before a backend completes them.
        served = loaded.read_config or loaded.config
        if _same_apart_from(served, config, "version_policy"):
            reuse.kept[version] = loaded
        elif _same_apart_from(
            served, config, "version_policy", "instance_group"
        ) and can_update_in_place(loaded, config):
            reuse.updated[version] = loaded
    return reuse
