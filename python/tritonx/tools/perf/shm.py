"""--shared-memory system for tritonx-perf: one POSIX shared memory region with every
request's inputs, one per output, registered with the server for the run and
unregistered and unlinked at its end."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

from tritonx.tools.perf.errors import PerfError


@dataclass
class Region:
    name: str
    block: shared_memory.SharedMemory
    registered: bool = False


class SystemSharedMemory:
    """--shared-memory system: one region with every step's inputs, one per output."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self._regions: list[Region] = []

    def create(self, suffix: str, size: int) -> str:
        name = f"tritonx_perf_{os.getpid()}_{suffix}"
        try:
            block = shared_memory.SharedMemory(
                name=name, create=True, size=max(size, 1)
            )
        except OSError as exc:
            raise PerfError(
                f"cannot create shared memory {name}: {exc.strerror}"
            ) from None
        region = Region(name, block)
        self._regions.append(region)
        try:
            self._api.register_system_shm(name, "/" + name, max(size, 1))
        except PerfError as exc:
            raise PerfError(
                f"failed to register shared memory region {name}: {exc}"
            ) from None
        region.registered = True
        return name

    def write(self, name: str, offset: int, data: bytes) -> None:
        region = next(r for r in self._regions if r.name == name)
        assert region.block.buf is not None
        region.block.buf[offset : offset + len(data)] = data

    def close(self) -> None:
        for region in self._regions:
            if region.registered:
                # A server that went away cannot unregister; the object goes anyway.
                with contextlib.suppress(PerfError):
                    self._api.unregister_system_shm(region.name)
            region.block.close()
            with contextlib.suppress(FileNotFoundError):
                region.block.unlink()
        self._regions = []
