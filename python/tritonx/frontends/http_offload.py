"""Large JSON infer bodies are decoded, and large JSON outputs rendered, off the
event loop.

With the native engine built, request bodies are parsed and walked by its RapidJSON
reader with the GIL released (``_native.native_parse_infer``,
``native_decode_generate``), so a thread does it (``run_decode``) while the loop
goes on, and nothing is copied or pickled. Without it, ``json.loads`` and numpy's
list conversions run in C and hold the GIL until they return, so a thread would not
keep the loop responsive: a 60 MB body of a million small inputs holds the GIL for
about four seconds of ``json.loads`` alone, and health checks starve meanwhile.
Helper processes run the same pure functions (``http_infer.parse_header``,
``http_infer.render_json_data``) in parallel while the loop only hands bytes to a
pipe. The millions of short-lived Python objects such a body makes also live and
die in the helper, so the server's own memory stays flat.

Below ``OFFLOAD_BYTES`` everything stays inline: the hand-over would cost more
than the work. Helpers are started (``spawn``: the server has native threads, so no
fork) on the first large request and exit with the server; if the server is killed
outright they notice their parent is gone and exit too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from tritonx import _native
from tritonx.errors import InternalError, TritonXError, UnavailableError

logger = logging.getLogger("tritonx.http")

# JSON text above this size is parsed (and JSON output data above this many wire
# bytes is rendered) off the loop, as the native engine does (core/infer_json.h). A
# 256 KiB body of tiny objects takes ~25 ms with json.loads.
OFFLOAD_BYTES = _native.JSON_OFF_LOOP_BYTES
HELPERS = 2

T = TypeVar("T")


def _watch_parent(parent: int) -> None:
    """Helper initializer: exit when the server is gone (killed without cleanup)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# Request decoders release the GIL for all their work when the native engine's
# reader is built (see the module docstring).
DECODE_RELEASES_GIL = _native.native_parse_infer is not None


class JsonOffload:
    """Small pools, created on first use, for CPU-heavy JSON work: threads for the
    native decoders, which release the GIL, helper processes for the rest."""

    def __init__(self, helpers: int = HELPERS) -> None:
        self._helpers = helpers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    def run_decode(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run the request decoder ``fn(*args)`` off the loop: on a thread where
        decoding releases the GIL (memoryviews are passed as they are), in a helper
        otherwise (memoryviews are copied to bytes, which pickle)."""
        if not DECODE_RELEASES_GIL:
            picklable = (bytes(a) if isinstance(a, memoryview) else a for a in args)
            return self.run(fn, *picklable)
        loop = asyncio.get_running_loop()
        if self._closed:
            future: asyncio.Future[T] = loop.create_future()
            future.set_exception(_stopping())
            return future
        if self._threads is None:
            self._threads = concurrent.futures.ThreadPoolExecutor(
                self._helpers, thread_name_prefix="tritonx-json"
            )
        return loop.run_in_executor(self._threads, fn, *args)

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in a helper; the future completes on the running loop.
        ``fn`` and its arguments must be picklable (module-level functions, bytes)."""
        loop = asyncio.get_running_loop()
        if self._closed:
            future: asyncio.Future[T] = loop.create_future()
            future.set_exception(_stopping())
            return future
        try:
            future = loop.run_in_executor(self._ensure_pool(), fn, *args)
        except BrokenProcessPool:
            # Found broken on submit (a helper died while idle): once more afresh.
            self._drop_pool()
            future = loop.run_in_executor(self._ensure_pool(), fn, *args)
        future.add_done_callback(self._flush)
        return future

    def _ensure_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._helpers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_watch_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    def _flush(self, _: object) -> None:
        # multiprocessing's queue feeder thread keeps the last item it pickled
        # (here: a whole request body) until it sends the next one; a no-op call
        # replaces it so the body's memory is freed now.
        if self._pool is not None:
            # A pool that broke meanwhile is replaced on the next run().
            with contextlib.suppress(BrokenProcessPool, RuntimeError):
                self._pool.submit(int)

    def result(self, future: asyncio.Future[T]) -> T:
        """The helper's result, or its error raised as a fresh exception.

        Re-raising the future's own exception would chain the caller's frames
        (and the request body they reference) onto it, and the future holds that
        exception: a reference cycle that keeps the body until a full GC."""
        if future.cancelled():
            raise _stopping()
        error = future.exception()
        if error is None:
            return future.result()
        if isinstance(error, TritonXError):
            raise type(error)(error.message)
        if isinstance(error, BrokenProcessPool):
            # A helper died (e.g. killed for memory); start afresh next time.
            self._drop_pool()
            raise UnavailableError(
                "the JSON worker process stopped unexpectedly; retry the request"
            )
        logger.error("JSON worker failed: %r", error)
        raise InternalError("failed to process the request JSON in a worker process")

    def close(self) -> None:
        self._closed = True
        self._drop_pool()
        threads, self._threads = self._threads, None
        if threads is not None:
            # A decode in flight finishes on its own (its result is dropped).
            threads.shutdown(wait=False, cancel_futures=True)

    def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _stopping() -> UnavailableError:
    return UnavailableError("the server is stopping")


# glibc's mallopt parameter; the threshold chosen for it (see MemoryReturn).
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    # Both are glibc's; other C libraries get no tuning.
    if libc is None or not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


class MemoryReturn:
    """Gives the memory of large requests back to the OS once they are done.

    glibc raises its mmap threshold (up to 32 MiB) each time a large block is
    freed, so later bodies, pickles and responses of a few MiB come from heaps
    instead, and the heaps of other threads (pool feeder and manager threads) are
    never trimmed by ``malloc_trim``: measured, a 30 MB JSON body left +90 MB of
    resident memory. A fixed 4 MiB threshold keeps large blocks in their own
    mappings, returned when freed; ``malloc_trim(0)``, run once shortly after the
    last large request finished, returns what fragmentation leaves in the heaps.
    The threshold is process-wide: a block of 4 MiB or more costs an mmap and its
    page faults, small next to handling that much data."""

    DELAY_S = 1.0
    _tuned = False

    def __init__(self) -> None:
        libc = _libc()
        self._trim: Callable[[int], int] | None = None
        if libc is not None:
            self._trim = libc.malloc_trim
            if not MemoryReturn._tuned:
                MemoryReturn._tuned = True
                libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        self._handle: asyncio.TimerHandle | None = None

    def note(self) -> None:
        """A large request finished; trim after a quiet moment."""
        if self._trim is None:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_later(self.DELAY_S, self._run)

    def _run(self) -> None:
        self._handle = None
        if self._trim is not None:
            self._trim(0)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
