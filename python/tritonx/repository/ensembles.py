"""Ensembles in the model manager: their composing models, as Triton 2.51 does.

* Loading an ensemble first loads its composing models that are not loaded yet
  (recursively; they count as loaded implicitly), then checks them against the
  ensemble (``validate_ensemble_models``). A failure is answered "load failed for
  model '<ensemble>': <reason>" and leaves the ensemble without versions.
* Unloading a model also unloads the ensembles that use it (they are UNAVAILABLE,
  "unloaded"); loading it again brings them back.
* Unloading an ensemble with ``unload_dependents`` also unloads its composing
  models that were only loaded for it and that no other loaded ensemble uses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from tritonx.config import ModelConfig
from tritonx.config.ensemble import composing_model_names, validate_ensemble_models
from tritonx.config.validate import validate_response_cache
from tritonx.errors import InvalidArgumentError, TritonXError
from tritonx.repository.records import ModelRecord
from tritonx.repository.repository import ModelId, RepositoryListing

log = logging.getLogger("tritonx.repository")

_LOAD_FAILED = "load failed for model '{name}': "


class CircularDependency(InvalidArgumentError):
    """An ensemble that depends on itself through ``cycle``: the keys of the
    ensembles in the cycle, each depending on the next and the last on the
    first."""

    def __init__(self, message: str, cycle: tuple[str, ...]) -> None:
        super().__init__(message)
        self.cycle = cycle


def _cycle_message(cycle: tuple[str, ...], key: str) -> str:
    """What Triton answers for ensemble ``key`` of ``cycle``: the cycle followed
    from ``key`` back to it, through the ensemble that depends on ``key`` (every
    ensemble of a cycle fails with its own start; models that only depend on the
    cycle fail for a composing model with no loaded version)."""
    at = cycle.index(key)
    return (
        f"circular dependency between ensembles: {key} -> ... -> "
        f"{cycle[at - 1]} -> {key}"
    )


def is_ensemble(config: ModelConfig) -> bool:
    return config.HasField("ensemble_scheduling")


def composing_keys(config: ModelConfig) -> set[str]:
    """The keys of the models an ensemble's steps run, as resolved at its load
    (each step's ``model_namespace``, as Triton writes it there)."""
    return {
        ModelId(step.model_namespace, step.model_name).key
        for step in config.ensemble_scheduling.step
    }


def composing_key(namespace: str, name: str, listing: RepositoryListing) -> str | None:
    """The model a step of an ensemble in ``namespace`` runs: the one of that name
    in the ensemble's own namespace, else the only one of that name (Triton's
    rule); None when there is none, or several elsewhere."""
    own = ModelId(namespace, name).key
    if own in listing.models:
        return own
    others = listing.keys_named(name)
    if len(others) == 1 and others[0] in listing.models:
        return others[0]
    return None


class EnsembleDependencies:
    """Bookkeeping the manager keeps for ensembles (mixed into ModelManager)."""

    options: Any
    _records: dict[str, ModelRecord]
    _listing: Callable[[], RepositoryListing]

    def _init_ensembles(self) -> None:
        # Models loaded on request (load API, startup), as opposed to composing
        # models loaded for an ensemble.
        self._explicit: set[str] = set()
        # composing model -> ensembles unloaded because it went away.
        self._dropped: dict[str, set[str]] = {}
        # Why the last load of a model failed (for the ensembles that need it).
        self._load_errors: dict[str, str] = {}

    # Provided by ModelManager.
    def _lock(self, name: str) -> asyncio.Lock:
        raise NotImplementedError

    _load_model: Callable[..., Awaitable[None]]
    _unload_record: Callable[..., Awaitable[None]]
    _stop_serving: Callable[..., Coroutine[Any, Any, None]]

    def _loaded_ensembles(self) -> list[tuple[str, ModelConfig]]:
        """(key, config) of the ensembles with a READY version."""
        out = []
        for key, record in list(self._records.items()):
            for version in record.ready_versions():
                loaded = record.versions[version].loaded
                if loaded is not None and is_ensemble(loaded.config):
                    out.append((key, loaded.config))
        return out

    def _users_of(self, key: str) -> list[str]:
        """Loaded ensembles with a step on the model ``key``."""
        return sorted(
            {
                user
                for user, config in self._loaded_ensembles()
                if key in composing_keys(config)
            }
        )

    async def _prepare_ensemble(
        self, model_id: ModelId, config: ModelConfig, chain: tuple[str, ...]
    ) -> InvalidArgumentError | None:
        """Load what the ensemble needs and check it; raises the load error. Returns
        the error each of its versions then fails with, if any: decoupled by its
        steps, the ensemble may be refused by the response cache (Triton's ensemble
        validation sets the policy, and the version's load fails so)."""
        try:
            await self._resolve(model_id, config, chain)
        except TritonXError as error:
            message = _LOAD_FAILED.format(name=model_id.name) + error.message + "\n"
            log.error("%s", message.strip())
            record = self._records.get(model_id.key)
            if record is not None and record.ready_versions():
                await self._unload_record(record)
            if isinstance(error, CircularDependency):
                raise CircularDependency(message, error.cycle) from None
            raise InvalidArgumentError(message) from None
        try:
            validate_response_cache(config)
        except InvalidArgumentError as error:
            return error
        return None

    async def _resolve(
        self, model_id: ModelId, config: ModelConfig, chain: tuple[str, ...]
    ) -> None:
        name = model_id.name
        deps = composing_model_names(config)
        listing = self._listing()
        keys = {d: composing_key(model_id.namespace, d, listing) for d in deps}
        missing = sorted(d for d, key in keys.items() if key is None)
        if missing:
            raise InvalidArgumentError(
                f"ensemble {model_id.key} contains models that are not available or "
                f"ambiguous: {', '.join(missing)}"
            )
        dep_keys = {d: key for d, key in keys.items() if key is not None}
        for key in dep_keys.values():
            if key in chain:  # chain ends with this ensemble's key
                cycle = chain[chain.index(key) :]
                raise CircularDependency(_cycle_message(cycle, model_id.key), cycle)
        for key in dep_keys.values():
            if self._ready_config(key) is not None:
                continue
            try:
                await self._load_model(key, None, None, chain)
                self._load_errors.pop(key, None)
            except CircularDependency as error:
                if model_id.key in error.cycle:
                    message = _cycle_message(error.cycle, model_id.key)
                    raise CircularDependency(message, error.cycle) from None
                self._load_errors[key] = error.message
            except TritonXError as error:
                self._load_errors[key] = error.message
        composing: dict[str, ModelConfig] = {}
        for dep, key in dep_keys.items():
            dep_config = self._ready_config(key)
            if dep_config is None:
                reason = self._load_errors.get(key)
                text = (
                    f"ensemble '{name}' depends on '{dep}' which has no loaded version."
                )
                if reason:
                    text += f" Model '{dep}' loading failed with error: {reason}"
                raise InvalidArgumentError(text)
            composing[dep] = dep_config
        for step in config.ensemble_scheduling.step:
            # Triton writes where each step's model was found into the config.
            step.model_namespace = listing.ids[dep_keys[step.model_name]].namespace
            version = int(step.model_version)
            record = self._records[dep_keys[step.model_name]]
            if version != -1 and version not in record.ready_versions():
                raise InvalidArgumentError(
                    f"ensemble '{name}' depends on '{step.model_name}' whose required "
                    f"version {version} is not loaded."
                )
        decoupled = validate_ensemble_models(config, composing)
        # Triton writes the result into the ensemble's config (and so into /config).
        config.model_transaction_policy.decoupled = decoupled

    def _ready_config(self, key: str) -> ModelConfig | None:
        record = self._records.get(key)
        if record is None:
            return None
        ready = record.ready_versions()
        if not ready:
            return None
        loaded = record.versions[ready[-1]].loaded
        return loaded.config if loaded is not None else None

    async def _unload_users(
        self, key: str, retirements: list[Coroutine[Any, Any, None]]
    ) -> None:
        """Stop the loaded ensembles using model ``key`` (transitively) from serving
        and add their retirements to ``retirements`` (outermost first) for the
        caller to await; remember them so that loading ``key`` again restores
        them."""
        for user in self._users_of(key):
            self._dropped.setdefault(key, set()).add(user)
            await self._unload_users(user, retirements)
            async with self._lock(user):
                record = self._records.get(user)
                if record is not None:
                    retirements.append(self._stop_serving(record))

    async def _unload_composing(self, config: ModelConfig) -> None:
        """``unload_dependents``: composing models only loaded for this ensemble."""
        for dep in sorted(composing_keys(config)):
            if dep in self._explicit or self._users_of(dep):
                continue
            async with self._lock(dep):
                record = self._records.get(dep)
                loaded_config = self._ready_config(dep)
                if record is not None:
                    await self._unload_record(record)
            if loaded_config is not None and is_ensemble(loaded_config):
                await self._unload_composing(loaded_config)

    async def _relink_ensembles(self, listing: RepositoryListing) -> None:
        """Namespacing, after a poll round: ensembles whose steps now resolve to
        other models load again, as Triton re-links its dependency graph. That is
        an ensemble whose own repository's model came (back), and one taken down
        because its model went away while another repository has the only model
        of that name. ``listing`` is the round's own: with a fresh one, a model
        moved away during the round would relink its ensembles to another
        repository's model while it is still loaded (its unload waits for the
        next round), and a client naming it would meanwhile find two."""
        stale = set()
        for key, config in self._loaded_ensembles():
            namespace = self._records[key].namespace
            for step in config.ensemble_scheduling.step:
                now = composing_key(namespace, step.model_name, listing)
                used = ModelId(step.model_namespace, step.model_name).key
                if now is not None and now != used:
                    stale.add(key)
        for gone, users in self._dropped.items():
            if gone not in listing.models:
                stale.update(u for u in users if self._ready_config(u) is None)
        for key in sorted(stale):
            try:
                await self._load_model(key, None, None)
            except TritonXError as error:
                log.error("failed to reload ensemble '%s': %s", key, error.message)
                continue
            for users in self._dropped.values():
                users.discard(key)

    async def _restore_users(self, key: str) -> None:
        """After model ``key`` loaded: bring back the ensembles its unload took
        down."""
        for user in sorted(self._dropped.pop(key, set())):
            if self._ready_config(user) is not None:
                continue
            try:
                await self._load_model(user, None, None, ())
            except TritonXError as error:
                log.error("failed to reload ensemble '%s': %s", user, error.message)
