"""The shutdown's drain (Server.stop): wait until no model has requests in flight,
or the exit timeout, logging as Triton does; then end the streams that clients
keep open."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("tritonx.server")


def models_with_inflight(manager: Any) -> list[Any]:
    """The core models of every ready version that still has requests in flight."""
    return [
        model.core
        for _, model in manager.ready_models()
        if model.core.inflight_count() > 0
    ]


async def wait_for_idle_models(manager: Any, deadline: float) -> None:
    """Wait until no model has requests in flight, or the deadline. Sleeps on the
    models' own idle signal (no polling), waking once a second to log like
    Triton."""
    loop = asyncio.get_running_loop()
    while True:
        busy = models_with_inflight(manager)
        left = deadline - time.monotonic()
        logger.info(
            "Timeout %d: Found %d model versions that have in-flight inferences",
            max(0, int(left + 0.999)),
            len(busy),
        )
        if not busy or left <= 0:
            return
        wait = min(1.0, left)
        await asyncio.gather(
            *(loop.run_in_executor(None, core.wait_idle, wait) for core in busy)
        )


async def drain_models(
    manager: Any, frontends: Mapping[str, Any], deadline: float
) -> None:
    """``wait_for_idle_models``, then the frontends' streams end: clients that keep
    a gRPC stream open do not hold the shutdown for the rest of the grace period.
    Until then a stream still takes requests, so that a sequence can complete,
    as in Triton (which waits for the client to close the stream)."""
    await wait_for_idle_models(manager, deadline)
    for frontend in list(frontends.values()):
        close_streams = getattr(frontend, "close_streams", None)
        if close_streams is not None:
            close_streams()
