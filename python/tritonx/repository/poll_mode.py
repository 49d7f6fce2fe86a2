"""Model control mode "poll": the repository is rescanned while the server runs.

Triton 2.51's rules, as observed on the reference server:

* Every ``--repository-poll-secs`` (0: never) the repositories are listed again.
  A model directory that is new is loaded; one that disappeared is unloaded (its
  in-flight requests finish; new ones get "has no available versions"); a name in
  two repositories is unloaded too. A model whose files changed is loaded again
  through the ordinary load path: new versions are built while the old ones serve,
  then swapped in (no request is dropped), and if anything fails the old versions
  keep serving.
* "Changed" compares modification times, per entry of the model directory (each
  entry's time is the latest one found beneath it), like Triton's ModelTimestamp
  (timestamps.py). The load then keeps the versions that did not change, as every
  load from the repository does (reuse.py).
* A model is marked as polled only when its load succeeded: a config that fails to
  parse or validate ("Poll failed for model directory ..." in the log; the index
  and the serving versions stay as they were) or a version that fails to load is
  tried again at every poll, as Triton does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tritonx.errors import TritonXError, UnavailableError
from tritonx.repository.records import ManagerOptions, ModelRecord
from tritonx.repository.repository import RepositoryListing
from tritonx.repository.storage import RepositoryStorage
from tritonx.repository.timestamps import Timestamp, model_timestamp

log = logging.getLogger("tritonx.repository")


class RepositoryPolling:
    """The poll side of the ModelManager (mixed into it)."""

    options: ManagerOptions
    _records: dict[str, ModelRecord]
    _explicit: set[str]

    # Provided by ModelManager.
    _listing: Callable[[], RepositoryListing]
    storage: RepositoryStorage
    _run: Callable[..., Awaitable[Any]]
    _load_model: Callable[..., Awaitable[None]]
    _stop_with_users: Callable[[str], Awaitable[Any]]
    _relink_ensembles: Callable[[RepositoryListing], Awaitable[None]]
    _ensemble_names: Callable[..., list[str]]
    _fetched_dirs: Callable[
        [Iterable[str], RepositoryListing], Iterator[tuple[str, Path]]
    ]

    def _init_polling(self) -> None:
        # Models as of their last successful (re)load: what the next poll compares.
        self._stamps: dict[str, Timestamp] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self._poll_round: asyncio.Future[None] | None = None
        self._poll_lock = asyncio.Lock()

    def _snapshot(
        self, names: list[str], listing: RepositoryListing | None = None
    ) -> dict[str, Timestamp]:
        """Timestamps of the listed models among ``names``; a cloud model's files
        are fetched first (one that cannot be is left out: unchanged this round).
        ``listing``: the round's own, so a cloud repository is listed once."""
        found = self._fetched_dirs(names, listing or self._listing())
        return {name: model_timestamp(model_dir) for name, model_dir in found}

    def _mark_polled(self, name: str, stamp: Timestamp | None) -> None:
        if stamp is not None:
            self._stamps[name] = stamp

    def _start_polling(self) -> None:
        if self.options.poll_secs > 0:
            self._poll_task = asyncio.ensure_future(self._poll_forever())

    async def _stop_polling(self) -> None:
        """Stops the timer; a round in progress finishes first (cancelling it
        could leave a freshly built model that nobody unloads)."""
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
        if self._poll_round is not None:
            with contextlib.suppress(Exception):
                await self._poll_round

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_secs)
            self._poll_round = asyncio.ensure_future(self.poll())
            try:
                await asyncio.shield(self._poll_round)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("failed to poll the model repositories")

    async def poll_now(self) -> None:
        """One round now, besides the timer's (the in-process API's
        ``poll_model_repository``). POLL mode only, as in Triton: UNAVAILABLE
        "polling is disabled" otherwise. Registered as the latest round, so that
        stopping waits for it too."""
        if self.options.control_mode != "poll":
            raise UnavailableError("polling is disabled")
        self._poll_round = asyncio.ensure_future(self.poll())
        await asyncio.shield(self._poll_round)

    async def poll(self) -> None:
        """One round: unload what went away, (re)load what is new or changed.
        Rounds never overlap: a later one waits for the one in progress."""
        async with self._poll_lock:
            await self._poll_once()

    async def _poll_once(self) -> None:
        listing = await self._run(self._listing)
        for name in sorted(listing.duplicates):
            if name in self._stamps or self._serving(name):
                log.error(
                    "failed to poll model '%s': not unique across all model "
                    "repositories",
                    name,
                )
        present = set(listing.models)
        gone = [
            name
            for name in sorted(set(self._stamps) | set(self._records))
            if name not in present and (name in self._stamps or self._serving(name))
        ]
        for name in gone:
            await self._poll_unload(name)
        stamps: dict[str, Timestamp] = await self._run(
            self._snapshot, sorted(present), listing
        )
        changed = [
            name for name in sorted(stamps) if self._stamps.get(name) != stamps[name]
        ]
        ensembles = set(await self._run(self._ensemble_names, changed, listing))
        for group in (
            [n for n in changed if n not in ensembles],
            [n for n in changed if n in ensembles],
        ):
            await asyncio.gather(*(self._poll_load(n, stamps[n]) for n in group))
        if self.options.namespacing:
            await self._relink_ensembles(listing)

    def _serving(self, name: str) -> bool:
        record = self._records.get(name)
        return record is not None and bool(record.ready_versions())

    async def _poll_load(self, name: str, stamp: Timestamp) -> None:
        # The load itself tells which versions are unchanged (see timestamps.py).
        try:
            await self._load_model(name, None, None)
        except TritonXError:
            return  # logged by the load; tried again at the next poll
        self._explicit.add(name)
        self._stamps[name] = stamp

    async def _poll_unload(self, name: str) -> None:
        self._stamps.pop(name, None)
        self._explicit.discard(name)
        # Its requests in flight drain in the background, as in Triton: a request
        # that never ends holds no later round up.
        await self._stop_with_users(name)
