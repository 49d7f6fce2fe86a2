"""The asyncio loop of one python-model instance, as Triton's stub keeps it.

An ``async def`` initialize, execute or finalize runs on a loop that runs for the
instance's life on a thread of its own, not on the thread that called it. So the
tasks a coroutine starts (``asyncio.create_task``) go on running after it returned,
and a decoupled model's coroutine execute runs in the background while the next
execute starts, as in Triton.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("tritonx.backends.python")

# How long finalize waits for the loop's thread once the loop was told to stop.
_STOP_WAIT_S = 10.0

BackgroundDone = Callable[[Any, "BaseException | None"], None]


class ModelEventLoop:
    """Starts its loop and thread with the first coroutine; ``close`` ends both.

    Thread-safety: ``run`` and ``start`` may be called from any thread (the
    instance's core worker, a model's own threads); ``close`` once, after the last
    of them, from the instance's finalize."""

    def __init__(self, instance_name: str) -> None:
        self._name = instance_name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Background executes, held until they end (the loop itself keeps only weak
        # references to its tasks).
        self._background: set[concurrent.futures.Future[Any]] = set()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever,
                    name=f"pb-asyncio-{self._name}",
                    daemon=True,  # a model's endless task never holds up the exit
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Runs ``coroutine`` on the loop and waits for its result (or raises)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._running()).result()

    def start(self, coroutine: Coroutine[Any, Any, Any], done: BackgroundDone) -> None:
        """Runs ``coroutine`` on the loop without waiting; ``done(result, error)``
        is called on the loop's thread when it ends."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running())
        self._background.add(future)

        def finished(f: concurrent.futures.Future[Any]) -> None:
            self._background.discard(f)
            if f.cancelled():
                return
            error = f.exception()
            try:
                done(None if error is not None else f.result(), error)
            except Exception:
                log.exception("python model %s: after a background execute", self._name)

        future.add_done_callback(finished)

    def close(self) -> None:
        """Cancels what still runs on the loop, stops it and ends its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        def cancel_and_stop() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.call_soon(loop.stop)  # after the cancelled tasks had their turn

        loop.call_soon_threadsafe(cancel_and_stop)
        thread.join(_STOP_WAIT_S)
        if thread.is_alive():
            log.warning(
                "python model %s: its asyncio loop did not stop within %.0f s",
                self._name,
                _STOP_WAIT_S,
            )
            return
        loop.close()
