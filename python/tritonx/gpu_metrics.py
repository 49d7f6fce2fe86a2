"""Triton's per-GPU metrics read through NVML (``nvidia-ml-py``).

``nv_gpu_utilization``, ``nv_gpu_memory_total_bytes``, ``nv_gpu_memory_used_bytes``,
``nv_gpu_power_usage``, ``nv_gpu_power_limit`` and ``nv_energy_consumption``, one
series per GPU labelled ``gpu_uuid`` as Triton's, sampled every
``--metrics-interval-ms`` on a worker thread (NVML calls block). The GPUs are those
the core's CUDA runtime sees (``CUDA_VISIBLE_DEVICES`` applies). Without NVML, a
driver or a usable GPU the families are simply absent, as on a CPU-only Triton.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric

logger = logging.getLogger("tritonx.metrics")

# (family, help, type, GpuReading field) in Triton's order.
GPU_FAMILIES = (
    ("nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)", "gauge", "utilization"),
    (
        "nv_gpu_memory_total_bytes",
        "GPU total memory, in bytes",
        "gauge",
        "memory_total",
    ),
    ("nv_gpu_memory_used_bytes", "GPU used memory, in bytes", "gauge", "memory_used"),
    ("nv_gpu_power_usage", "GPU power usage in watts", "gauge", "power_usage"),
    (
        "nv_gpu_power_limit",
        "GPU power management limit in watts",
        "gauge",
        "power_limit",
    ),
    (
        "nv_energy_consumption",
        "GPU energy consumption in joules since the Triton Server started",
        "counter",
        "energy",
    ),
)


@dataclass
class GpuReading:
    uuid: str
    utilization: float = 0.0
    memory_total: int = 0
    memory_used: int = 0
    power_usage: float = 0.0
    power_limit: float = 0.0
    energy: float = 0.0


def _visible(nvml: Any, count: int) -> list[Any]:
    """NVML handles of the GPUs CUDA numbers 0..count-1."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    total = nvml.nvmlDeviceGetCount()
    if visible is None:
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(min(count, total))]
    handles: list[Any] = []
    for item in (v.strip() for v in visible.split(",")):
        if len(handles) == count or not item:
            break
        if item.isdigit():
            handles.append(nvml.nvmlDeviceGetHandleByIndex(int(item)))
        else:
            handles.append(nvml.nvmlDeviceGetHandleByUUID(item))
    return handles


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GpuSampler:
    """NVML readings of the visible GPUs, refreshed by ``run``."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles
        self.readings = [GpuReading(_text(nvml.nvmlDeviceGetUUID(h))) for h in handles]
        self._energy_start: list[float | None] = [None] * len(handles)
        self.sample()

    @classmethod
    def create(cls, gpu_count: int) -> GpuSampler | None:
        """A sampler, or None (logged once) when there is no GPU or no NVML."""
        if gpu_count <= 0:
            return None
        try:
            import pynvml

            pynvml.nvmlInit()
            handles = _visible(pynvml, gpu_count)
        except Exception as exc:  # no package, no driver, no device
            logger.warning("GPU metrics unavailable: %s", exc)
            return None
        if not handles:
            return None
        return cls(pynvml, handles)

    def _read(self, index: int, handle: Any) -> None:
        nvml, reading = self._nvml, self.readings[index]
        # Each reading on its own: a GPU may not support one of them (power on
        # some boards); the others still count.
        with contextlib.suppress(nvml.NVMLError):
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            reading.utilization = rates.gpu / 100.0
        with contextlib.suppress(nvml.NVMLError):
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            reading.memory_total = int(memory.total)
            reading.memory_used = int(memory.used)
        with contextlib.suppress(nvml.NVMLError):
            reading.power_usage = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        with contextlib.suppress(nvml.NVMLError):
            limit = nvml.nvmlDeviceGetPowerManagementLimit(handle)
            reading.power_limit = limit / 1000.0
        with contextlib.suppress(nvml.NVMLError):
            joules = nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0
            start = self._energy_start[index]
            if start is None:
                self._energy_start[index] = start = joules
            reading.energy = joules - start

    def sample(self) -> None:
        for index, handle in enumerate(self._handles):
            self._read(index, handle)

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.sample)

    def families(self) -> Iterator[Metric]:
        for name, doc, typ, field in GPU_FAMILIES:
            family = Metric(name, doc, typ)
            for reading in self.readings:
                family.add_sample(
                    name, {"gpu_uuid": reading.uuid}, getattr(reading, field)
                )
            yield family

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()
