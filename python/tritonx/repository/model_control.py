"""Model control for code outside the manager's event loop: a Python model's
``pb_utils.load_model`` / ``unload_model`` / ``is_model_ready`` (backends/pb/
model_control.py), called from a backend thread, in-process or for a stub process.

Each call runs the manager's own coroutine (the one the HTTP and gRPC repository
APIs run, with their checks and texts) on the manager's loop and waits for it.
Thread safety: any thread but the manager's loop thread (which would wait on
itself; refused).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from tritonx.errors import InternalError, UnavailableError

if TYPE_CHECKING:
    from tritonx.repository.model_manager import ModelManager


class ModelControl:
    """A synchronous face of one ModelManager's explicit model control."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._manager.loop
        if loop is None or loop.is_closed() or not self._manager.started:
            # Triton's answer while the startup models load (and at shutdown).
            raise UnavailableError("Server not ready")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise InternalError("model control cannot wait on its own event loop")
        return loop

    def _run(self, make: Coroutine[Any, Any, None], wait: bool) -> None:
        try:
            loop = self._started_loop()
        except Exception:
            make.close()
            raise
        future = asyncio.run_coroutine_threadsafe(make, loop)
        if wait:
            future.result()

    def load(
        self,
        name: str,
        config: str | None,
        files: Mapping[str, bytes] | None,
        *,
        wait: bool = True,
    ) -> None:
        """Load or reload ``name`` (explicit mode only). ``wait`` False: return once
        the load is under way (a model reloading itself from its own execute)."""
        self._manager.check_explicit()
        self._run(self._manager.load(name, config, files), wait)

    def unload(self, name: str, unload_dependents: bool, *, wait: bool = True) -> None:
        """Unload ``name`` (explicit mode only): returns once it no longer serves,
        its requests in flight finishing in the background (Triton's unload call).
        ``wait`` False: return at once (a model unloading itself from its own
        execute, which an ensemble using it may be waiting on)."""
        self._manager.check_explicit()
        self._run(self._manager.begin_unload(name, unload_dependents), wait)

    def ready(self, name: str, version: int | None) -> bool:
        return self._manager.model_ready(name, "" if version is None else str(version))
