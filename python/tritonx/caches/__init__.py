"""Response caches other than the in-process ``local`` one (which is C++,
csrc/core/response_cache.h): stores reached over the network, behind the core's
RemoteResponseCache (csrc/core/remote_response_cache.h), which encodes entries,
keeps lookups off the frontends' threads and batches work for the store.

A cache is found by its ``--cache-config`` name: an entry point of the group
``tritonx.caches`` first, then the built-ins (``redis``). Its target is called with
the cache's settings (``{"host": "...", "port": "..."}``, strings as given on the
command line) and returns a store:

    class Store:
        workers: int                      # threads that call the store at once
        def get_many(self, keys: list[str]) -> list[bytes | None]: ...
        def put_many(self, entries: list[tuple[str, bytes]]) -> int: ...  # stored
        def close(self) -> None: ...

``get_many``/``put_many`` run on the cache's worker threads and must not raise for a
failed store (log, and answer misses / 0); raising from the factory fails server
start-up with that error, as a cache that cannot initialize fails Triton's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from tritonx import plugins
from tritonx.errors import InternalError

ENTRY_POINT_GROUP = "tritonx.caches"
BUILTIN_CACHES: dict[str, str] = {"redis": "tritonx.caches.redis_cache:RedisStore"}
LOCAL_CACHE = "local"


class ResponseStore(Protocol):
    workers: int

    def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    def put_many(self, entries: list[tuple[str, bytes]]) -> int: ...

    def close(self) -> None: ...


def available() -> list[str]:
    """Every cache name ``--cache-config`` accepts."""
    return sorted({LOCAL_CACHE, *plugins.available(ENTRY_POINT_GROUP, BUILTIN_CACHES)})


def create_store(name: str, settings: Mapping[str, str]) -> ResponseStore:
    """The store of cache ``name`` (not ``local``), connected and checked."""
    target = plugins.find_target(name, ENTRY_POINT_GROUP, BUILTIN_CACHES)
    if target is None:
        raise LookupError(name)  # the command line checked the name already
    try:
        factory = plugins.load_target(target, "cache")
    except ModuleNotFoundError as error:
        hint = f"; pip install 'tritonx[{name}]'" if name in BUILTIN_CACHES else ""
        raise InternalError(f"cache '{name}' cannot be loaded: {error}{hint}") from None
    store: ResponseStore = factory(dict(settings))
    return store
