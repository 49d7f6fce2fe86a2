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
from collections.abc import Awaitable, Callable
from typing import Any

from tritonx.config import ModelConfig
from tritonx.config.ensemble import composing_model_names, validate_ensemble_models
from tritonx.errors import InvalidArgumentError, TritonXError
from tritonx.repository.records import LoadedModel, ModelRecord
from tritonx.repository.repository import list_repositories

log = logging.getLogger("tritonx.repository")

_LOAD_FAILED = "load failed for model '{name}': "


def is_ensemble(config: ModelConfig) -> bool:
    return config.HasField("ensemble_scheduling")


class EnsembleDependencies:
    """Bookkeeping the manager keeps for ensembles (mixed into ModelManager)."""

    options: Any
    _records: dict[str, ModelRecord]

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

    def _loaded_ensembles(self) -> list[LoadedModel]:
        out = []
        for record in list(self._records.values()):
            for version in record.ready_versions():
                loaded = record.versions[version].loaded
                if loaded is not None and is_ensemble(loaded.config):
                    out.append(loaded)
        return out

    def _users_of(self, name: str) -> list[str]:
        """Loaded ensembles with a step on ``name``."""
        return sorted(
            {
                e.name
                for e in self._loaded_ensembles()
                if name in composing_model_names(e.config)
            }
        )

    async def _prepare_ensemble(
        self, name: str, config: ModelConfig, chain: tuple[str, ...]
    ) -> None:
        """Load what the ensemble needs and check it; raises the load error."""
        try:
            await self._resolve(name, config, chain)
        except TritonXError as error:
            message = _LOAD_FAILED.format(name=name) + error.message + "\n"
            log.error("%s", message.strip())
            record = self._records.get(name)
            if record is not None and record.ready_versions():
                await self._unload_record(record)
            raise InvalidArgumentError(message) from None

    async def _resolve(
        self, name: str, config: ModelConfig, chain: tuple[str, ...]
    ) -> None:
        deps = composing_model_names(config)
        listing = list_repositories(self.options.repositories)
        missing = sorted(d for d in deps if d not in listing.models)
        if missing:
            raise InvalidArgumentError(
                f"ensemble {name} contains models that are not available or "
                f"ambiguous: {', '.join(missing)}"
            )
        for dep in deps:
            if dep in chain:
                raise InvalidArgumentError(
                    f"circular dependency between ensembles: {dep} -> ... -> "
                    f"{chain[-1]} -> {dep}"
                )
        for dep in deps:
            if self._ready_config(dep) is not None:
                continue
            try:
                await self._load_model(dep, None, None, chain)
                self._load_errors.pop(dep, None)
            except TritonXError as error:
                self._load_errors[dep] = error.message
        composing: dict[str, ModelConfig] = {}
        for dep in deps:
            dep_config = self._ready_config(dep)
            if dep_config is None:
                reason = self._load_errors.get(dep)
                text = (
                    f"ensemble '{name}' depends on '{dep}' which has no loaded version."
                )
                if reason:
                    text += f" Model '{dep}' loading failed with error: {reason}"
                raise InvalidArgumentError(text)
            composing[dep] = dep_config
        for step in config.ensemble_scheduling.step:
            version = int(step.model_version)
            record = self._records[step.model_name]
            if version != -1 and version not in record.ready_versions():
                raise InvalidArgumentError(
                    f"ensemble '{name}' depends on '{step.model_name}' whose required "
                    f"version {version} is not loaded."
                )
        decoupled = validate_ensemble_models(config, composing)
        # Triton writes the result into the ensemble's config (and so into /config).
        config.model_transaction_policy.decoupled = decoupled

    def _ready_config(self, name: str) -> ModelConfig | None:
        record = self._records.get(name)
        if record is None:
            return None
        ready = record.ready_versions()
        if not ready:
            return None
        loaded = record.versions[ready[-1]].loaded
        return loaded.config if loaded is not None else None

    async def _unload_users(self, name: str) -> None:
        """Unload the loaded ensembles using ``name`` (transitively); remember them
        so that loading ``name`` again restores them."""
        for user in self._users_of(name):
            self._dropped.setdefault(name, set()).add(user)
            await self._unload_users(user)
            async with self._lock(user):
                record = self._records.get(user)
                if record is not None:
                    await self._unload_record(record)

    async def _unload_composing(self, config: ModelConfig) -> None:
        """``unload_dependents``: composing models only loaded for this ensemble."""
        for dep in composing_model_names(config):
            if dep in self._explicit or self._users_of(dep):
                continue
            async with self._lock(dep):
                record = self._records.get(dep)
                loaded_config = self._ready_config(dep)
                if record is not None:
                    await self._unload_record(record)
            if loaded_config is not None and is_ensemble(loaded_config):
                await self._unload_composing(loaded_config)

    async def _restore_users(self, name: str) -> None:
        """After ``name`` loaded: bring back the ensembles its unload took down."""
        for user in sorted(self._dropped.pop(name, set())):
            if self._ready_config(user) is not None:
                continue
            try:
                await self._load_model(user, None, None, ())
            except TritonXError as error:
                log.error("failed to reload ensemble '%s': %s", user, error.message)
