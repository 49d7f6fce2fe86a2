"""--shared-memory system|cuda for tritonx-perf: one region with every request's
inputs, one per output, registered with the server for the run and unregistered and
freed at its end. System regions are POSIX shared memory; CUDA regions are device
memory from tritonclient's cuda_shared_memory utilities (cudaIpc handles), as
perf_analyzer uses them (GPU 0)."""

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


class CudaSharedMemory:
    """--shared-memory cuda: the same layout in GPU memory. Inputs are staged on the
    host by write() and copied to the device once, by flush()."""

    def __init__(self, api: Any, device_id: int = 0) -> None:
        try:
            # Raises RuntimeError without cuda-python, ImportError without tritonclient.
            from tritonclient.utils import cuda_shared_memory
        except Exception as exc:  # any reason means no CUDA shm
            raise PerfError(
                "--shared-memory cuda needs a CUDA GPU and tritonclient's CUDA "
                f"support (pip install 'tritonclient[cuda]'): {exc}"
            ) from None
        self._cudashm: Any = cuda_shared_memory
        self._api = api
        self._device = device_id
        self._handles: dict[str, Any] = {}
        self._staged: dict[str, bytearray] = {}
        self._registered: list[str] = []

    def create(self, suffix: str, size: int) -> str:
        name = f"tritonx_perf_{os.getpid()}_{suffix}"
        size = max(size, 1)
        try:
            handle = self._cudashm.create_shared_memory_region(name, size, self._device)
        except Exception as exc:  # CUDA errors have no common type
            raise PerfError(
                f"cannot create CUDA shared memory {name} on GPU {self._device}: {exc}"
            ) from None
        self._handles[name] = handle
        try:
            raw = self._cudashm.get_raw_handle(handle)
            self._api.register_cuda_shm(name, raw, self._device, size)
        except PerfError as exc:
            raise PerfError(
                f"failed to register CUDA shared memory region {name}: {exc}"
            ) from None
        self._registered.append(name)
        return name

    def write(self, name: str, offset: int, data: bytes) -> None:
        staged = self._staged.setdefault(name, bytearray())
        if len(staged) < offset + len(data):
            staged.extend(bytes(offset + len(data) - len(staged)))
        staged[offset : offset + len(data)] = data

    def flush(self) -> None:
        import numpy as np

        for name, staged in self._staged.items():
            values = np.frombuffer(bytes(staged), dtype=np.uint8)
            try:
                self._cudashm.set_shared_memory_region(self._handles[name], [values])
            except Exception as exc:
                raise PerfError(
                    f"cannot copy the inputs into CUDA shared memory {name}: {exc}"
                ) from None
        self._staged.clear()

    def close(self) -> None:
        for name in self._registered:
            with contextlib.suppress(PerfError):
                self._api.unregister_cuda_shm(name)
        for handle in self._handles.values():
            with contextlib.suppress(Exception):
                self._cudashm.destroy_shared_memory_region(handle)
        self._registered = []
        self._handles = {}


WireTensor = tuple[str, str, list[int], bytes | None, str, int, int]


def wire_requests(
    shm: SystemSharedMemory | CudaSharedMemory | None,
    steps: list[list[Any]],
    output_names: list[str],
    output_size: int,
) -> tuple[list[list[WireTensor]], list[tuple[str, str, int, int]]]:
    """The request templates as PerfTarget takes them: each input (name, datatype,
    shape, bytes or None, region, offset, size) inline, or, with ``shm``, written into
    one input region; each output (name, region, offset, size), with ``shm`` a region
    of ``output_size`` bytes per output."""
    if shm is None:
        wire = [
            [(t.name, t.datatype, t.shape, t.data, "", 0, 0) for t in s] for s in steps
        ]
        return wire, [(name, "", 0, 0) for name in output_names]
    region = shm.create("input", sum(len(t.data) for step in steps for t in step))
    offset = 0
    wire_steps: list[list[WireTensor]] = []
    for step in steps:
        one: list[WireTensor] = []
        for t in step:
            shm.write(region, offset, t.data)
            one.append((t.name, t.datatype, t.shape, None, region, offset, len(t.data)))
            offset += len(t.data)
        wire_steps.append(one)
    if isinstance(shm, CudaSharedMemory):
        shm.flush()
    outputs = [
        (name, shm.create(f"output{i}", output_size), 0, output_size)
        for i, name in enumerate(output_names)
    ]
    return wire_steps, outputs
