"""Where a server's metrics come from: collectors over its model manager and arena,
and the CPU and GPU samplers behind them.

The samplers are made once per server, with the first metrics endpoint (the command
line's, or one that ``Server.start_endpoint("metrics")`` adds later), and shared by
every later endpoint, so that a second endpoint does not sample the devices again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from tritonx.metrics import CpuSampler, TritonCollector, native_arena_stats
from tritonx.metrics_config import MetricsConfig

if TYPE_CHECKING:
    from tritonx.server_options import ServerOptions

logger = logging.getLogger("tritonx.server")


class MetricsSources:
    """The collectors of one server's metrics endpoints and their shared samplers."""

    def __init__(
        self, manager: Any, context: Any, config: MetricsConfig, gpu_count: int
    ) -> None:
        self._manager = manager
        self._context = context
        self._config = config
        self._gpu_count = gpu_count
        # (CPU sampler, GPU sampler), made with the first metrics endpoint.
        self._samplers: tuple[CpuSampler | None, Any] | None = None
        # The samplers' loops; cancelled when the server stops.
        self._sampling: list[asyncio.Task[None]] = []

    def collector(
        self, cpu: CpuSampler | None = None, gpu: Any = None
    ) -> TritonCollector:
        """A collector of the model families, with the samplers given (none: the
        model families alone, which tritonserver's core keeps counting even with
        the metrics endpoint off)."""
        return TritonCollector(
            self._manager,
            cpu=cpu,
            gpu=gpu,
            arena_stats=native_arena_stats(self._context),
            config=self._config,
        )

    def endpoint_collector(self, opts: ServerOptions) -> TritonCollector:
        """A metrics endpoint's collector, with the CPU and GPU samplers ``opts``
        allows. Must run on the server's loop: the samplers run as its tasks."""
        if self._samplers is None:
            cpu: CpuSampler | None = None
            interval = max(opts.metrics_interval_ms, 1.0) / 1000.0
            if opts.allow_cpu_metrics:
                cpu = CpuSampler()
                self._sampling.append(asyncio.create_task(cpu.run(interval)))
                logger.info("Collecting CPU metrics")
            from tritonx.gpu_metrics import GpuSampler

            gpu = GpuSampler.create(self._gpu_count) if opts.allow_gpu_metrics else None
            if gpu is not None:
                self._sampling.append(asyncio.create_task(gpu.run(interval)))
                logger.info(
                    "Collecting metrics for GPU %s",
                    ", ".join(r.uuid for r in gpu.readings),
                )
            self._samplers = (cpu, gpu)
        return self.collector(*self._samplers)

    async def stop_sampling(self) -> None:
        for task in self._sampling:
            task.cancel()
        for task in self._sampling:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sampling.clear()
