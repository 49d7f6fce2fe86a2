"""Retiring model versions: the ModelManager's unloading half (mixed into it).

A version leaves the registry first (no new request reaches it), then is retired
off the event loop: ``retire_version`` drains its in-flight requests (unless told
not to, past the exit timeout) and runs the backend's ``finalize``. Draining may
take as long as the slowest request, so it runs on the default executor, not on
the load threads.

As in Triton, a control call does not wait for the drain: an explicit unload stops
serving under the model's lock and retires outside it (``begin_unload`` answers
once nothing serves), and a reload retires the versions it replaced in the
background, so a load of the model may run meanwhile. The shutdown tells those
retirements to stop draining and waits for them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from tritonx import heap
from tritonx.repository.agents import AgentChain
from tritonx.repository.loader import retire_version
from tritonx.repository.records import (
    READY,
    UNAVAILABLE,
    UNLOADED_REASON,
    UNLOADING,
    LoadedModel,
    ModelRecord,
    VersionSlot,
)
from tritonx.repository.repository import OverrideDirectory
from tritonx.repository.series import MetricSeries

log = logging.getLogger("tritonx.repository")


async def one_after_another(steps: list[Coroutine[Any, Any, None]], name: str) -> None:
    """Awaits each step; one that fails is logged and the next still runs."""
    for step in steps:
        try:
            await step
        except Exception:
            log.exception("unloading '%s'", name)


class ModelUnloading:
    """Unloading records and retiring versions, for the ModelManager."""

    registry: Any
    # Provided by the ModelManager and ModelLookup.
    # Retirements running in the background (and begin_unload's unloads): the
    # shutdown waits for them, after telling their drains to give up.
    _retirements: set[asyncio.Future[Any]]
    _abandon_drains: threading.Event
    unload: Callable[..., Coroutine[Any, Any, None]]
    _run: Callable[..., Awaitable[Any]]
    _set_duration: Callable[[str, int, float | None], None]
    _records: dict[str, ModelRecord]
    series: MetricSeries

    async def begin_unload(self, name: str, unload_dependents: bool = False) -> None:
        """Triton's unload call: returns once no version of ``name`` serves any more
        (new requests are refused, the index says UNLOADING); draining the requests
        in flight, the backend's finalize and ``unload_dependents`` go on in the
        background. Ensembles that use ``name`` stop serving with it. An error
        before that is raised; one after it is logged."""
        stopped = asyncio.Event()
        task = self._in_background(
            self.unload(name, unload_dependents, stopped=stopped), name, stopped
        )
        waiter: asyncio.Future[Any] = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if task.done() and not stopped.is_set():
            task.result()  # its error, before anything stopped

    def _in_background(
        self,
        work: Coroutine[Any, Any, None],
        name: str,
        reported: asyncio.Event | None = None,
    ) -> asyncio.Future[None]:
        """Runs ``work`` as a task the shutdown waits for; its error is logged
        (only once ``reported`` is set, when given: the caller raises it before)."""
        task = asyncio.ensure_future(work)
        self._retirements.add(task)

        def finished(task: asyncio.Future[None]) -> None:
            self._retirements.discard(task)
            error = None if task.cancelled() else task.exception()
            if error is not None and (reported is None or reported.is_set()):
                log.error("unloading '%s': %s", name, error)

        task.add_done_callback(finished)
        return task

    async def _unload_record(self, record: ModelRecord, drain: bool = True) -> None:
        """Stops serving the record's versions and retires them."""
        await self._stop_serving(record, drain)

    def _stop_serving(
        self, record: ModelRecord, drain: bool = True
    ) -> Coroutine[Any, Any, None]:
        """At once: the record's serving versions leave the registry and are
        UNLOADING. Returns their retirement (drain, finalize, the agents' UNLOAD,
        the files of a load from a request), to be awaited, maybe later and
        outside the record's lock: a new load of the model may run meanwhile."""
        serving = [s for s in record.versions.values() if s.state == READY]
        for slot in serving:
            self.registry.remove(record.name, slot.version, namespace=record.namespace)
        models = self._mark_unloading(record, serving)
        agents, record.agents = record.agents, None
        override, record.override = record.override, None
        record.stamp = None
        return self._retire_slots(serving, models, drain, agents, override)

    def _mark_unloading(
        self, record: ModelRecord, slots: list[VersionSlot]
    ) -> list[LoadedModel]:
        models = []
        for slot in slots:
            log.info("unloading: %s:%d", record.name, slot.version)
            slot.state = UNLOADING
            if slot.loaded is not None:
                slot.loaded.state = UNLOADING
                models.append(slot.loaded)
                self.series.stopped_serving(record.id, slot.loaded)
            self._set_duration(record.id.key, slot.version, None)
        return models

    async def _retire_slots(
        self,
        slots: list[VersionSlot],
        models: list[LoadedModel],
        drain: bool = True,
        agents: AgentChain | None = None,
        override: OverrideDirectory | None = None,
    ) -> None:
        """Retires ``models`` (those of ``slots``, UNLOADING, and others replaced);
        then the slots are UNAVAILABLE "unloaded" (a new load of the version has
        put a slot of its own in the record meanwhile)."""
        await self._retire(models, drain)
        for slot in slots:
            if slot.state == UNLOADING:
                slot.state, slot.reason = UNAVAILABLE, UNLOADED_REASON
                slot.loaded = None
        if agents is not None:
            await self._run(agents.unload)  # UNLOAD to the agents
        if override is not None:
            override.cleanup()

    async def _retire(self, models: list[LoadedModel], drain: bool = True) -> None:
        # Draining may take as long as the slowest in-flight request, so it does
        # not occupy the load threads.
        loop = asyncio.get_running_loop()
        for model in models:
            heap.thaw(model)  # the retired models' cycles must be collectable
            model.state = UNLOADING
        results = await asyncio.gather(
            *(
                loop.run_in_executor(
                    None, retire_version, m, drain, self._abandon_drains
                )
                for m in models
            ),
            return_exceptions=True,
        )
        heap.refreeze_when_collected()
        for model, result in zip(models, results, strict=True):
            model.state, model.reason = UNAVAILABLE, UNLOADED_REASON
            self.series.retired(model, self._label_set_lives_on(model))
            if isinstance(result, BaseException):
                log.error(
                    "error while unloading '%s' version %d: %s",
                    model.name,
                    model.version,
                    result,
                )

    def _label_set_lives_on(self, model: LoadedModel) -> bool:
        """Whether another object with ``model``'s metric labels serves (a
        reload's new version) or drains."""
        entry = self.series.draining.get(id(model))
        if entry is None:
            return False
        key = (entry[0].key, model.version)
        record = self._records.get(key[0])
        slot = record.versions.get(model.version) if record is not None else None
        serving = slot is not None and slot.state == READY and slot.loaded is not model
        return serving or self.series.draining_with(key, other_than=model)
