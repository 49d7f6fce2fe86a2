"""A python model's own readiness check (``TritonPythonModel.is_ready``, newer
Triton): asked whenever the model's readiness is (``/v2/models/<m>/ready``, gRPC
ModelReady, and the server's readiness under ``--strict-readiness``).

Triton's rules: the function returns a bool (sync or ``async def``); an exception, a
value that is not a bool, or no answer within five seconds means "not ready" for
that check; one call per instance at a time, and checks arriving meanwhile wait for
it and share its answer. A model without ``is_ready`` costs nothing here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("tritonx.backends.python")

# Triton's limit for one is_ready() answer.
READINESS_TIMEOUT_S = 5.0


def call_is_ready(model_object: Any) -> bool:
    """The model's ``is_ready()`` answer; raises when it fails or is no bool."""
    result = model_object.is_ready()
    if inspect.isawaitable(result):
        # Its own loop on this (probe) thread: the instance's loop belongs to the
        # thread that runs execute.
        loop = asyncio.new_event_loop()
        try:
            result = loop.run_until_complete(result)
        finally:
            loop.close()
    if not isinstance(result, bool):
        raise TypeError("is_ready() must return a boolean value")
    return result


class ReadinessProbe:
    """Single-flight, time-bounded calls of one instance's readiness check.

    ``check`` runs on a thread of its own (it may block: model code, or a round trip
    to a stub process); ``ready()`` waits for it at most READINESS_TIMEOUT_S. A check
    still running when the next ``ready()`` comes is joined, never started twice.
    Thread-safe; owns nothing but the probe thread of the call in flight."""

    def __init__(self, name: str, check: Callable[[], bool]) -> None:
        self._name = name
        self._check = check
        self._lock = threading.Lock()
        self._inflight: concurrent.futures.Future[bool] | None = None

    def _run(self, future: concurrent.futures.Future[bool]) -> None:
        try:
            future.set_result(bool(self._check()))
        except BaseException as exc:  # reported by ready(); the thread just ends
            future.set_exception(exc)
        finally:
            with self._lock:
                if self._inflight is future:
                    self._inflight = None

    def ready(self) -> bool:
        with self._lock:
            future = self._inflight
            # A finished check is never shared, even before its thread has let go
            # of it (_run clears it after setting the answer; a starved probe thread
            # left a stale answer for the next caller).
            if future is None or future.done():
                future = self._inflight = concurrent.futures.Future()
                threading.Thread(
                    target=self._run,
                    args=(future,),
                    name=f"is-ready-{self._name}",
                    daemon=True,
                ).start()
        try:
            return future.result(timeout=READINESS_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            log.warning(
                "model instance '%s' is not ready: is_ready() did not answer in %g s",
                self._name,
                READINESS_TIMEOUT_S,
            )
        except Exception as exc:
            log.warning("model instance '%s' is not ready: %s", self._name, exc)
        return False


__all__ = ["READINESS_TIMEOUT_S", "ReadinessProbe", "call_is_ready"]
