"""ModelManager: loads, reloads and unloads model versions (architecture §6).

Follows Triton's model lifecycle as observed on Triton 2.51:

* A load builds every selected version but those it reuses (reuse.py, for loads
  of every kind: explicit, poll, startup): a READY version whose files did not
  change since its load keeps serving as it is when its config is the same apart
  from its version policy, and has its instances updated in place
  (instance_update.py) when only its instance groups changed. Only when all
  builds and updates succeeded are they
  swapped into the registry and the versions no longer selected unloaded. If any failed,
  the new versions are dropped again ("unloaded") and what was served before stays
  served; a version that was READY stays READY even if its reload failed.
* Backend code blocks, so version loads run on a thread pool of ``load_threads``.
* Loads and unloads of the same model are serialized; different models proceed in
  parallel.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from tritonx.config import ModelConfig
from tritonx.config.parse import parse_errors_unlogged
from tritonx.errors import (
    CODE_WORDS,
    InternalError,
    InvalidArgumentError,
    TritonXError,
    UnavailableError,
    as_triton_error,
)
from tritonx.repository.agents import AgentChain, adopt_agents, run_load_agents
from tritonx.repository.ensembles import EnsembleDependencies, is_ensemble
from tritonx.repository.instance_update import update_instances
from tritonx.repository.loader import LoadSettings, build_version
from tritonx.repository.lookup import ModelLookup
from tritonx.repository.model_control import ModelControl
from tritonx.repository.poll_mode import RepositoryPolling
from tritonx.repository.polling import PollFailure, read_model_config
from tritonx.repository.records import (
    LOADING,
    READY,
    UNAVAILABLE,
    UNLOADED_REASON,
    LoadedModel,
    ManagerOptions,
    ModelRecord,
    VersionSlot,
)
from tritonx.repository.registration import RepositoryRegistration
from tritonx.repository.repository import (
    ModelId,
    OverrideDirectory,
    RepositoryListing,
    check_name_to_load,
    select_versions,
    version_dirs,
)
from tritonx.repository.reuse import reused_versions
from tritonx.repository.timestamps import (
    Timestamp,
    config_entry,
    model_timestamp,
    unchanged_versions,
)
from tritonx.repository.unloading import ModelUnloading, one_after_another

log = logging.getLogger("tritonx.repository")
T = TypeVar("T")

_CONTROL_MODES = ("none", "explicit", "poll")


def failure_reason(error: BaseException) -> str:
    triton = as_triton_error(error)
    return f"{CODE_WORDS.get(triton.code, 'Unknown')}: {triton.message}"


class ModelManager(
    ModelUnloading,
    ModelLookup,
    EnsembleDependencies,
    RepositoryPolling,
    RepositoryRegistration,
):
    """See the module docstring; the query side lives in ModelLookup, ensemble
    dependencies in EnsembleDependencies, poll mode in RepositoryPolling, the
    repository set (run-time registration) in RepositoryRegistration, retiring
    versions in ModelUnloading."""

    def __init__(
        self, options: ManagerOptions, registry: Any, context: Any = None
    ) -> None:
        """``context``: the server's ``_native.ServerContext`` (None: the core's
        default, for managers used without a server)."""
        if options.control_mode not in _CONTROL_MODES:
            raise InvalidArgumentError(
                f"unknown model control mode '{options.control_mode}'"
            )
        super().__init__(options)
        self._init_ensembles()
        self._init_polling()
        self._init_registration()
        self.registry = registry
        registry.set_namespacing(options.namespacing)
        self._locks: dict[str, asyncio.Lock] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, options.load_threads),
            thread_name_prefix="tritonx-load",
        )
        self._shut_down = False
        # Cleared when the server gives up on loads still running (abandon_loads).
        self._join_load_threads = True
        self._retirements: set[asyncio.Future[Any]] = set()
        self._abandon_drains = threading.Event()  # set by the shutdown
        # The loop start() runs on: model control from backend threads goes there.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._settings = LoadSettings(
            auto_complete=options.auto_complete,
            backend_config={k: dict(v) for k, v in options.backend_config.items()},
            host_policies={k: dict(v) for k, v in options.host_policies.items()},
            context=context,
            control=ModelControl(self),
        )

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Load the startup models of the control mode (all of them in "none")."""
        self.loop = asyncio.get_running_loop()
        opts = self.options
        polling = opts.control_mode == "poll"
        if opts.control_mode == "explicit":
            names = self._startup_names()
        else:
            names = self._listing().names()
        self._explicit.update(names)
        # What the first poll compares with, taken before anything loads.
        stamps = await self._run(self._snapshot, names) if polling else {}
        # Ensembles after the models they use (which they would load otherwise).
        ensembles = set(await self._run(self._ensemble_names, names))
        plain = [n for n in names if n not in ensembles]
        results = await asyncio.gather(
            *(self._load_model(n, None, None) for n in plain),
            return_exceptions=True,
        )
        composed = [n for n in names if n in ensembles]
        results += await asyncio.gather(
            *(self._load_if_not_ready(n) for n in composed),
            return_exceptions=True,
        )
        self._started = True
        for name, result in zip(plain + composed, results, strict=True):
            if polling and not isinstance(result, BaseException):
                self._mark_polled(name, stamps.get(name))
        failed = [r for r in results if isinstance(r, BaseException)]
        for error in failed:
            if not isinstance(error, TritonXError):
                raise error
        if failed and opts.exit_on_error:
            await self.shutdown()
            raise InternalError("failed to load all models")
        if polling:
            self._start_polling()

    def _ensemble_names(
        self, names: list[str], listing: RepositoryListing | None = None
    ) -> list[str]:
        found = []
        for name, model_dir in self._fetched_dirs(names, listing or self._listing()):
            try:
                # A look-ahead: the load that follows reports a failure.
                with parse_errors_unlogged():
                    config, _ = read_model_config(model_dir, self.options, None)
            except PollFailure:
                continue
            if is_ensemble(config):
                found.append(name)
        return found

    async def _load_if_not_ready(self, name: str) -> None:
        # An ensemble another ensemble of the startup set loaded already.
        if self._ready_config(name) is None:
            await self._load_model(name, None, None)

    def _startup_names(self) -> list[str]:
        names = list(dict.fromkeys(self.options.startup_models))
        if "*" in names and len(names) > 1:
            raise InvalidArgumentError(
                "Wildcard model name '*' must be the ONLY startup model if "
                "specified at all."
            )
        listing = self._listing()
        if "*" in names:
            return listing.names()
        return [key for name in names for key in self._keys_to_load(name, listing)]

    def _keys_to_load(self, name: str, listing: Any = None) -> list[str]:
        """A load by name loads the model of that name in every namespace (as
        Triton); a name no repository has stays as it is (the load fails)."""
        if not self.options.namespacing:
            return [name]
        mapped = self._mapped_id(name)
        if mapped is not None:  # a mapped name is that one model only
            return [mapped.key]
        found = (listing or self._listing()).keys_named(name)
        return found or [name]

    async def shutdown(self) -> None:
        """Unload every model version, then stop the load threads. Idempotent: a
        start that fails (exit-on-error) shuts down, and the server's stop after it
        must find nothing left to do."""
        if self._shut_down:
            return
        self._shut_down = True
        await self._stop_polling()
        # Versions still draining from an unload or a reload stop waiting: the
        # server has drained requests already (exit timeout).
        self._abandon_drains.set()
        while self._retirements:  # (one may start another: an unload's retirement)
            await asyncio.gather(*list(self._retirements), return_exceptions=True)
        for name in list(self._records):
            async with self._lock(name):
                record = self._records.get(name)
                if record is not None:
                    # The server has drained requests already (exit timeout).
                    await self._unload_record(record, drain=False)
        self._started = False
        self._pool.shutdown(wait=self._join_load_threads, cancel_futures=True)
        self.storage.close()

    def abandon_loads(self) -> None:
        """The server stops while models still load (a signal during start-up): the
        shutdown does not wait for the load threads, whose model code (a long
        ``initialize``) cannot be interrupted; the process leaves without them."""
        self._join_load_threads = False

    # -- explicit control ------------------------------------------------------

    @property
    def started(self) -> bool:
        """True once the startup models were loaded."""
        return self._started

    def check_explicit(self) -> None:
        self._check_initialized()  # Triton refuses that first
        if self.options.control_mode != "explicit":
            # Triton says "polling" for every mode that is not explicit.
            raise UnavailableError(
                "explicit model load / unload is not allowed if polling is enabled"
            )

    async def load(
        self,
        name: str,
        config: str | None = None,
        files: Mapping[str, bytes] | None = None,
    ) -> None:
        """Load or reload ``name``; ``config`` is a JSON override and ``files``
        maps "<version>/<file>" to contents for a temporary model directory."""
        self.check_explicit()
        check_name_to_load(name)
        keys = [name] if files else self._keys_to_load(name)
        for key in keys:
            await self._load_model(key, config, files)
            self._explicit.add(key)
            await self._restore_users(key)

    async def unload(
        self,
        name: str,
        unload_dependents: bool = False,
        *,
        stopped: asyncio.Event | None = None,
    ) -> None:
        """Unload every version of ``name``; unknown names are not an error.

        Ensembles using ``name`` are unloaded too. ``unload_dependents`` on an
        ensemble also unloads the composing models loaded only for it (see
        repository/ensembles.py). ``stopped`` is set once none of its versions
        serves, before their requests in flight have drained.
        """
        self.check_explicit()
        keys = [name]
        if self.options.namespacing:  # every namespace's model of that name
            keys = [k for k, r in list(self._records.items()) if r.name == name]
        configs = {key: self._forget_explicit(key) for key in keys}
        retirements = [await self._stop_with_users(key) for key in keys]
        if stopped is not None:
            stopped.set()
        for key, retirement in zip(keys, retirements, strict=True):
            await retirement
            config = configs[key]
            if unload_dependents and config is not None and is_ensemble(config):
                await self._unload_composing(config)

    def _set_resolvable(self, record: ModelRecord, resolvable: bool) -> None:
        record.resolvable = resolvable
        self.registry.set_resolvable(
            record.name, resolvable, namespace=record.namespace
        )

    def _forget_explicit(self, key: str) -> ModelConfig | None:
        """An explicit unload of ``key``: it stays unloaded (no ensemble restores
        it). Returns the config it serves with, if any."""
        self._explicit.discard(key)
        for dropped in self._dropped.values():  # unloaded on purpose: stays so
            dropped.discard(key)
        return self._ready_config(key)

    async def _stop_with_users(self, key: str) -> asyncio.Future[None]:
        """Model ``key`` and the ensembles using it stop serving at once (each under
        its lock); returns their retirement, running in the background outside the
        locks (a load of the model may begin meanwhile, as in Triton), the
        ensembles first: their runs in flight hold the model until they end, so
        it drains after them."""
        retirements: list[Coroutine[Any, Any, None]] = []
        await self._unload_users(key, retirements)
        async with self._lock(key):
            record = self._records.get(key)
            if record is not None:
                retirements.append(self._stop_serving(record))
                self._set_resolvable(record, False)
        return self._in_background(one_after_another(retirements, key), key)

    # -- loading ---------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, partial(fn, *args)
        )

    async def _load_model(
        self,
        name: str,
        config: str | None,
        files: Mapping[str, bytes] | None,
        chain: tuple[str, ...] = (),
    ) -> None:
        """Every load goes through here (explicit, poll, startup, ensembles)."""
        async with self._lock(name):
            try:
                model_id, model_dir, repository, override = self._model_source(
                    name, config, files
                )
            except PollFailure as failure:
                raise failure.as_error() from None
            # Taken before anything is built, as Triton does: a file that changes
            # while the versions load is a change for the next load.
            stamp = None
            if override is None:
                stamp = await self._run(model_timestamp, model_dir)
            unchanged = self._unchanged(model_id.key, model_dir, stamp)
            try:
                await self._load_versions(
                    model_id, config, model_dir, repository, override, chain, unchanged
                )
            except BaseException:
                if override is not None:
                    override.cleanup()
                raise
            # A failed load leaves the stamp of the versions still serving.
            self._records[model_id.key].stamp = stamp

    def _unchanged(
        self, key: str, model_dir: Path, stamp: Timestamp | None
    ) -> frozenset[int]:
        """Versions whose files did not change since the load serving them (none
        for a load with files, or after one: Triton builds those again)."""
        record = self._records.get(key)
        old = record.stamp if record is not None else None
        if old is None or stamp is None:
            return frozenset()
        entry = config_entry(self.options.config_name, model_dir)
        return unchanged_versions(old, stamp, entry)

    async def _load_versions(
        self,
        model_id: ModelId,
        config_json: str | None,
        model_dir: Path,
        repository: Path,
        override: OverrideDirectory | None,
        chain: tuple[str, ...] = (),
        unchanged: frozenset[int] = frozenset(),
    ) -> None:
        mapped_name = model_id.name if self._is_mapped(model_id) else None
        try:
            config, stage_error = await self._run(
                read_model_config, model_dir, self.options, config_json, mapped_name
            )
            # Repository agents run at Triton's poll stage too (agents.py).
            agents = await self._run(
                run_load_agents, config, model_dir, self.options.repoagent_directory
            )
        except PollFailure as failure:
            raise failure.as_error() from None
        try:
            await self._load_selected(
                model_id,
                config,
                stage_error,
                agents.location if agents is not None else model_dir,
                repository,
                override,
                agents,
                chain,
                unchanged,
            )
        except BaseException:
            if agents is not None:
                await self._run(agents.load_finished, False)
            raise

    async def _load_selected(
        self,
        model_id: ModelId,
        config: ModelConfig,
        stage_error: TritonXError | None,
        model_dir: Path,
        repository: Path,
        override: OverrideDirectory | None,
        agents: AgentChain | None,
        chain: tuple[str, ...],
        unchanged: frozenset[int],
    ) -> None:
        """The rest of a load once the config is read and the agents ran:
        ``model_dir`` is where the agents left the model."""
        name, key = model_id.name, model_id.key
        if is_ensemble(config):
            # Triton checks an ensemble against its composing models before its
            # versions load, where the load-stage checks (stage_error) fail them.
            ensemble_error = await self._prepare_ensemble(
                model_id, config, (*chain, key)
            )
            stage_error = stage_error or ensemble_error
        selected = select_versions(config, version_dirs(model_dir))
        record = self._records.setdefault(key, ModelRecord(name, model_id.namespace))
        self.registry.set_known(name, True, namespace=model_id.namespace)
        self._set_resolvable(record, True)
        if not selected:
            message = (
                f"at least one version must be available under the version policy "
                f"of model '{name}'"
            )
            log.error("failed to load model '%s': %s", name, message)
            raise InvalidArgumentError(f"load failed for model '{name}': {message}\n")

        was_ready = set(record.ready_versions())
        reuse = reused_versions(record, config, unchanged, stage_error)
        kept, updated = reuse.kept, reuse.updated
        to_build = [v for v in selected if v not in kept and v not in updated]
        for version in to_build:
            if version not in was_ready:
                record.versions[version] = VersionSlot(version, LOADING)
        results = await asyncio.gather(
            *(
                self._build(config, v, model_dir, repository, stage_error)
                for v in to_build
            ),
            *(
                self._run(update_instances, loaded, config, self._settings)
                for loaded in updated.values()
            ),
            return_exceptions=True,
        )
        built: dict[int, LoadedModel] = {}
        failed: dict[int, BaseException] = {}
        for version, result in zip(to_build, results, strict=False):
            if isinstance(result, LoadedModel):
                built[version] = result
            elif isinstance(result, BaseException):
                failed[version] = result
        for (version, loaded), result in zip(
            updated.items(), results[len(to_build) :], strict=True
        ):
            if isinstance(result, BaseException):
                failed[version] = result
            else:
                kept[version] = loaded  # served on, with its new instances
        if failed:
            await self._roll_back(record, built, failed, was_ready)
        else:
            built.update({v: kept[v] for v in selected if v in kept})
            await self._swap_in(record, built, override)
            await self._run(adopt_agents, record, agents)
            log.info("successfully loaded '%s'", name)

    async def _build(
        self,
        config: ModelConfig,
        version: int,
        model_dir: Path,
        repository: Path,
        stage_error: TritonXError | None,
    ) -> LoadedModel:
        log.info("loading: %s:%d", config.name, version)
        if stage_error is not None:
            raise stage_error
        failures = 0
        while True:
            try:
                return await self._run(
                    build_version,
                    config,
                    version,
                    model_dir,
                    repository,
                    self._settings,
                )
            except Exception as error:
                failures += 1
                if failures > self.options.load_retries:
                    raise
                log.warning(
                    "failed to load '%s' version %d (attempt %d of %d), retrying: %s",
                    config.name,
                    version,
                    failures,
                    self.options.load_retries + 1,
                    as_triton_error(error).message,
                )

    async def _roll_back(
        self,
        record: ModelRecord,
        built: dict[int, LoadedModel],
        failed: dict[int, BaseException],
        was_ready: set[int],
    ) -> None:
        """Drop what this load built; whatever was served before stays served."""
        await self._retire(list(built.values()))
        for version in built:
            if version not in was_ready:
                record.versions[version] = VersionSlot(
                    version, UNAVAILABLE, UNLOADED_REASON
                )
        parts = []
        for version, error in sorted(failed.items()):
            reason = failure_reason(error)
            log.error(
                "failed to load '%s' version %d: %s", record.name, version, reason
            )
            parts.append(f"version {version} is at UNAVAILABLE state: {reason};\n")
            if version not in was_ready:
                record.versions[version] = VersionSlot(version, UNAVAILABLE, reason)
                self.registry.set_unavailable(
                    record.name, version, namespace=record.namespace
                )
        raise InvalidArgumentError(
            f"load failed for model '{record.name}': {''.join(parts)}"
        )

    async def _swap_in(
        self,
        record: ModelRecord,
        built: dict[int, LoadedModel],
        override: OverrideDirectory | None,
    ) -> None:
        """Serve the new versions, then retire what they replace."""
        retiring: list[LoadedModel] = []
        for version, loaded in sorted(built.items()):
            old = record.versions.get(version)
            if old is not None and old.loaded is loaded:
                continue  # kept or updated in place (reuse.py)
            # Replaces the old entry atomically.
            self.registry.add(loaded.core, namespace=record.namespace)
            if old is not None and old.loaded is not None and old.state == READY:
                retiring.append(old.loaded)
                self.series.stopped_serving(record.id, old.loaded)
            record.versions[version] = VersionSlot(version, READY, "", loaded)
            self._set_duration(record.id.key, version, loaded.load_seconds)
        dropped = []
        for version, slot in record.versions.items():
            if version not in built and slot.state == READY:
                self.registry.remove(record.name, version, namespace=record.namespace)
                dropped.append(slot)
        old_override, record.override = record.override, override
        retiring += self._mark_unloading(record, dropped)
        # The replaced versions drain in the background, as in Triton: the load is
        # answered once the new ones serve.
        self._in_background(
            self._retire_slots(
                dropped,
                retiring,
                override=old_override if old_override is not override else None,
            ),
            record.name,
        )
