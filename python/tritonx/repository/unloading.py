"""Retiring model versions: the ModelManager's unloading half (mixed into it).

A version leaves the registry first (no new request reaches it), then is retired
off the event loop: ``retire_version`` drains its in-flight requests (unless told
not to, past the exit timeout) and runs the backend's ``finalize``. Draining may
take as long as the slowest request, so it runs on the default executor, not on
the load threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tritonx.repository.agents import adopt_agents
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

log = logging.getLogger("tritonx.repository")


class ModelUnloading:
    """Unloading records and retiring versions, for the ModelManager."""

    registry: Any
    # Provided by the ModelManager and ModelLookup.
    _run: Callable[..., Awaitable[Any]]
    _set_duration: Callable[[str, int, float | None], None]

    async def _unload_record(self, record: ModelRecord, drain: bool = True) -> None:
        serving = [s for s in record.versions.values() if s.state == READY]
        for slot in serving:
            self.registry.remove(record.name, slot.version, namespace=record.namespace)
        await self._retire_slots(record, serving, [], drain)
        await self._run(adopt_agents, record, None)  # UNLOAD to the agents
        record.stamp = None
        if record.override is not None:
            record.override.cleanup()
            record.override = None

    async def _retire_slots(
        self,
        record: ModelRecord,
        slots: list[VersionSlot],
        extra: list[LoadedModel],
        drain: bool = True,
    ) -> None:
        models = list(extra)
        for slot in slots:
            log.info("unloading: %s:%d", record.name, slot.version)
            slot.state = UNLOADING
            if slot.loaded is not None:
                slot.loaded.state = UNLOADING
                models.append(slot.loaded)
            self._set_duration(record.id.key, slot.version, None)
        await self._retire(models, drain)
        for slot in slots:
            if slot.state == UNLOADING:
                slot.state, slot.reason = UNAVAILABLE, UNLOADED_REASON
                slot.loaded = None

    async def _retire(self, models: list[LoadedModel], drain: bool = True) -> None:
        # Draining may take as long as the slowest in-flight request, so it does
        # not occupy the load threads.
        loop = asyncio.get_running_loop()
        for model in models:
            model.state = UNLOADING
        results = await asyncio.gather(
            *(loop.run_in_executor(None, retire_version, m, drain) for m in models),
            return_exceptions=True,
        )
        for model, result in zip(models, results, strict=True):
            model.state, model.reason = UNAVAILABLE, UNLOADED_REASON
            if isinstance(result, BaseException):
                log.error(
                    "error while unloading '%s' version %d: %s",
                    model.name,
                    model.version,
                    result,
                )
