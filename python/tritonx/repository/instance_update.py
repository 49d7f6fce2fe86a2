"""Triton's in-place instance update: a reload of a serving version whose files did
not change and whose config differs only in ``instance_group`` (and
``version_policy``) changes that version's instances while it keeps serving,
instead of building it again.

Instances are matched by Triton's signature (their group apart from its name and
count, and their device; placement.Placement.signature): an instance the new
config still asks for is kept as it is, whatever its group is now called; the
config's other instances are created (while the kept ones serve), added to the
core held from its queue, warmed up and released to it; the instances nobody asks for any more are retired. A retired
instance takes no new work, finishes what it holds (under the sequence batcher,
every sequence bound to it) and is then finalized by its backend
(``remove_instance``), off the load's path. Statistics, queued requests and
sequences carry on through the update.

Everything here blocks (backend code) and runs on the manager's thread pool."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any

from tritonx import heap
from tritonx.config import ModelConfig
from tritonx.config.to_core import instance_rate_limit
from tritonx.repository.loader import LoadSettings, create_instances, first_failure
from tritonx.repository.placement import (
    Placement,
    executors_of,
    instance_contexts,
    placements,
)
from tritonx.repository.records import LoadedModel
from tritonx.repository.warmup import run_warmup

log = logging.getLogger("tritonx.repository")

# How long a finalizer waits for the core in one go before it looks again.
_RETIRE_POLL_S = 30.0


def can_update_in_place(loaded: LoadedModel, config: ModelConfig) -> bool:
    """Whether a reload to ``config`` may update ``loaded`` in place, given that
    its files did not change and its config differs only in the instance groups
    (the manager checks both): its backend can release one instance, and both
    the old and the new config give some instance work (an all-passive model runs
    a stand-in, which is built again)."""
    return (
        loaded.backend_model is not None
        and hasattr(loaded.backend_model, "remove_instance")
        and any(ids for ids in loaded.executor_ids)
        and any(not p.passive for p in placements(config))
    )


def _match(
    old: list[Placement], new: list[Placement]
) -> tuple[list[int], list[Placement], list[int]]:
    """(positions of the old instances kept, the placements to create, positions
    of the old instances retired), each old instance kept at most once, in order."""
    free: dict[tuple[bytes, int], list[int]] = defaultdict(list)
    for position, place in enumerate(old):
        free[place.signature].append(position)
    kept: list[int] = []
    to_create: list[Placement] = []
    for place in new:
        same = free.get(place.signature)
        if same:
            kept.append(same.pop(0))
        else:
            to_create.append(place)
    retired = sorted(p for positions in free.values() for p in positions)
    return kept, to_create, retired


def update_instances(
    loaded: LoadedModel, config: ModelConfig, settings: LoadSettings
) -> None:
    """Change ``loaded``'s instances to those ``config`` asks for (see the module
    docstring); raise, with nothing changed, when an added instance fails to
    initialize or warm up, or the rate limiter cannot schedule it."""
    kept, to_create, retired = _match(loaded.placements, placements(config))
    read_config = type(config)()
    read_config.CopyFrom(config)
    # The config served from now on: the one loaded (as the backend completed it)
    # with the new instance groups and version policy, as Triton updates it.
    config = _with_instances_of(loaded.config, config)
    if not to_create and not retired:
        # Names, order or version policy: nothing to run.
        loaded.config, loaded.read_config = config, read_config
        return
    log.info(
        "updating instances of '%s' version %d: %d added, %d removed",
        loaded.name,
        loaded.version,
        len(to_create),
        len(retired),
    )
    contexts, streams = instance_contexts(
        config, to_create, first_index=len(loaded.instances)
    )
    created = create_instances(loaded.backend_model, contexts, settings.host_policies)
    failure = first_failure(created)
    if failure is not None:
        _release(loaded, [c for c in created if not isinstance(c, BaseException)])
        raise failure
    added_ids, executors, limits = _executors(
        loaded, created, contexts, to_create, config
    )
    core = loaded.core
    added = [i for ids in added_ids for i in ids]
    try:
        # Held: they run only their warmup until released, as Triton warms an
        # instance up before it serves.
        core.update_instances(executors, [], limits, settings.context, hold_added=True)
    except BaseException:
        _release(loaded, created)
        raise
    # Numbered by the core from now on (a refused update numbers nothing).
    loaded.next_executor += len(executors)
    try:
        assert loaded.model_dir is not None  # set for every model with instances
        run_warmup(
            core,
            config,
            loaded.model_dir,
            [
                (ids[0], ctx.name)
                for ids, ctx in zip(added_ids, contexts, strict=True)
                if ids
            ],
        )
    except BaseException:
        core.update_instances([], added)
        for instance, ids in zip(created, added_ids, strict=True):
            _finalize_later(loaded, instance, ids)
        raise
    if added:
        core.release_instances(added)
    retired_ids = [i for p in retired for i in loaded.executor_ids[p]]
    if retired_ids:
        core.update_instances([], retired_ids)
    for p in retired:
        _finalize_later(loaded, loaded.instances[p], loaded.executor_ids[p])

    def pick(values: list[Any], new: list[Any]) -> list[Any]:
        return [values[p] for p in kept] + new

    loaded.instances = pick(loaded.instances, created)
    loaded.placements = pick(loaded.placements, to_create)
    loaded.contexts = pick(loaded.contexts, contexts)
    loaded.executor_ids = pick(loaded.executor_ids, added_ids)
    loaded.streams = loaded.streams + streams
    loaded.config, loaded.read_config = config, read_config


def _executors(
    loaded: LoadedModel,
    created: list[Any],
    contexts: list[Any],
    to_create: list[Placement],
    config: ModelConfig,
) -> tuple[list[list[int]], list[Any], list[Any]]:
    """The core executors of the created instances, the numbers the core will
    give each, and their rate limits (as the loader makes them for a whole
    model)."""
    ids: list[list[int]] = []
    executors: list[Any] = []
    limits: list[Any] = []
    number = loaded.next_executor
    for instance, ctx, place in zip(created, contexts, to_create, strict=True):
        entries = executors_of(instance, ctx, config)
        ids.append(list(range(number, number + len(entries))))
        number += len(entries)
        executors += entries
        limits += [instance_rate_limit(place.group, place.device)] * len(entries)
    return ids, executors, limits


def _release(loaded: LoadedModel, instances: list[Any]) -> None:
    """Finalize instances the core never ran."""
    for instance in instances:
        _remove(loaded, instance)


def _finalize_later(loaded: LoadedModel, instance: Any, ids: list[int]) -> None:
    """Finalize ``instance`` once the core's executors ``ids`` (its own) run nothing
    more, on a thread of its own: a retired instance may hold sequences for long,
    and each goes as soon as it can. retire_version waits for the thread before the
    backend unloads the rest."""

    heap.thaw(instance)  # the retired instance's cycles must be collectable

    def finalize() -> None:
        while ids and not loaded.core.wait_retired(ids, _RETIRE_POLL_S):
            pass
        _remove(loaded, instance)
        heap.refreeze_when_collected()

    thread = threading.Thread(
        target=finalize, name=f"tritonx-retire-{loaded.name}", daemon=True
    )
    loaded.retiring.append(thread)
    thread.start()


def _remove(loaded: LoadedModel, instance: Any) -> None:
    try:
        loaded.backend_model.remove_instance(instance)
    except Exception:
        log.exception(
            "error while removing an instance of '%s' version %d",
            loaded.name,
            loaded.version,
        )


def _with_instances_of(loaded: ModelConfig, new: ModelConfig) -> ModelConfig:
    config = type(loaded)()
    config.CopyFrom(loaded)
    config.ClearField("instance_group")
    config.instance_group.extend(new.instance_group)
    config.version_policy.CopyFrom(new.version_policy)
    return config
