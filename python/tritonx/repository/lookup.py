"""The read side of the ModelManager: index, readiness, lookups, statistics.

Messages follow Triton 2.51: a model the manager never tried to load is "not
found"; one it tried but that has no READY version "has no available versions"; a
known but not READY version "is not at ready state"; any other version "is not
found".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tritonx.config import ModelConfig
from tritonx.errors import (
    InvalidArgumentError,
    NotFoundError,
    TritonXError,
    UnavailableError,
)
from tritonx.repository.records import (
    READY,
    UNAVAILABLE,
    UNLOADED_REASON,
    LoadedModel,
    ManagerOptions,
    ModelRecord,
)
from tritonx.repository.reports import model_metadata, model_statistics
from tritonx.repository.repository import (
    DUPLICATE_REASON,
    ModelId,
    RepositoryListing,
)
from tritonx.repository.series import MetricSeries


def _unknown(name: str, what: str) -> str:
    return f"Request for unknown model: '{name}' {what}"


def _parse_version(version: str) -> int | None:
    """None for "" (the latest version); Triton's reading and errors (core rule)."""
    from tritonx import _native

    parsed: int | None = _native.parse_model_version(version)
    return parsed


class ModelLookup:
    # Provided by RepositoryRegistration: the repositories as they are now.
    _listing: Callable[[], RepositoryListing]
    # Provided by ModelManager: the core's ModelRegistry, which the frontends'
    # request paths look models up in.
    registry: Any

    def __init__(self, options: ManagerOptions) -> None:
        self.options = options
        # By key (repository.ModelId.key): the name, unless namespacing is on.
        self._records: dict[str, ModelRecord] = {}
        self._started = False
        # Set by the server when it failed to initialise (see server_live).
        self._failed_to_initialize = False
        # (key, version) -> seconds the load took; for nv_model_load_duration_secs.
        self.model_load_durations: dict[tuple[str, int], float] = {}
        # What the Prometheus series count beyond the READY versions (series.py).
        self.series = MetricSeries()

    def _set_duration(self, key: str, version: int, seconds: float | None) -> None:
        # Replaced, not mutated: the metrics collector may be iterating the old one.
        durations = dict(self.model_load_durations)
        if seconds is None:
            durations.pop((key, version), None)
        else:
            durations[(key, version)] = seconds
        self.model_load_durations = durations

    def resolve(self, name: str) -> str:
        """The key of the model a client names: the name itself without
        namespacing; with it, the one model of that name the manager has loaded
        (and not unloaded), and Triton's errors when there is none or more than
        one. The core registry resolves the same way (ModelRegistry::Find)."""
        if not self.options.namespacing:
            return name
        named = [(k, r) for k, r in list(self._records.items()) if r.name == name]
        if not named:
            raise InvalidArgumentError(_unknown(name, "is not found"))
        keys = [key for key, record in named if record.resolvable]
        if not keys:
            raise NotFoundError(
                f"Identifier of model '{name}' is not found in global map"
            )
        if len(keys) > 1:
            raise InvalidArgumentError(
                f"There are {len(keys)} identifiers of model '{name}' in global map, "
                "model namespace must be provided to resolve ambiguity."
            )
        return keys[0]

    # -- index and readiness ---------------------------------------------------

    def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        """Triton's repository index: every model directory of every repository,
        sorted by name, with one entry per version the manager knows about.

        Models never loaded have only a name; a name in two repositories is
        UNAVAILABLE even with ``ready_only`` (as in Triton).
        """
        self._check_initialized()
        listing = self._listing()
        rows: list[dict[str, Any]] = []
        for key in listing.names():
            name = listing.ids[key].name
            if key in listing.duplicates:
                rows.append(
                    {"name": name, "state": UNAVAILABLE, "reason": DUPLICATE_REASON}
                )
                continue
            record = self._records.get(key)
            if record is None:
                if not ready_only:
                    rows.append({"name": name})
                continue
            for version, slot in sorted(record.versions.items()):
                if ready_only and slot.state != READY:
                    continue
                row: dict[str, Any] = {
                    "name": name,
                    "version": str(version),
                    "state": slot.state,
                }
                if slot.reason:
                    row["reason"] = slot.reason
                rows.append(row)
        return rows

    def fail_initialization(self) -> None:
        """The server failed to initialise (a repository that does not exist,
        with --exit-on-error=false): nothing loads, and the server stays neither
        live nor ready for the rest of its run, as Triton's
        SERVER_FAILED_TO_INITIALIZE state. Inference, looked up in the core
        registry, is refused "Server not ready" there."""
        self._failed_to_initialize = True
        self.registry.set_server_not_ready()

    def server_live(self) -> bool:
        """Triton's liveness: the server answers and did not fail to initialise.
        Every frontend's live answer (HTTP, gRPC, SageMaker, the embedding API)
        asks this."""
        return not self._failed_to_initialize

    def _check_initialized(self) -> None:
        """Triton's answer to every model query or control of a server that failed
        to initialise."""
        if self._failed_to_initialize:
            raise UnavailableError("Server not ready")

    def server_ready(self) -> bool:
        """With strict readiness: every model the manager tried to load has
        versions, all READY or unloaded on purpose (Triton's rule)."""
        if not self._started:
            return False
        if not self.options.strict_readiness:
            return True
        # list(): frontends on other threads may ask while a load changes states.
        for record in list(self._records.values()):
            if not record.versions:
                return False
            for slot in list(record.versions.values()):
                if slot.state != READY and slot.reason != UNLOADED_REASON:
                    return False
                # A model's own is_ready() counts too (newer Triton's rule).
                loaded = slot.loaded
                probes = readiness_probes(loaded) if loaded is not None else []
                if not all(probe.ready() for probe in probes):
                    return False
        return True

    def readiness_may_block(self, name: str = "", version: str = "") -> bool:
        """Whether answering readiness may run a model's is_ready() (up to five
        seconds): for the model named, or for the server ("" name) when strict
        readiness asks every model. Frontends then answer off their event loop."""
        if not name:
            if not (self._started and self.options.strict_readiness):
                return False
            models = [loaded for _id, loaded in self.ready_models()]
        else:
            try:
                models = [self.get(name, version)]
            except (NotFoundError, UnavailableError, InvalidArgumentError):
                return False
        return any(readiness_probes(loaded) for loaded in models)

    def model_ready(self, name: str, version: str = "") -> bool:
        """Unknown models and versions are simply not ready, as in Triton; a version
        string that is no version is an InvalidArgumentError, as there."""
        self._check_initialized()
        _parse_version(version)
        try:
            loaded = self.get(name, version)
        except (NotFoundError, UnavailableError, InvalidArgumentError):
            return False
        # Instances in stub processes (python EXECUTION_MODE "process") can be down
        # while they restart; with all of them down the model cannot serve.
        alive = [i.alive() for i in loaded.instances if hasattr(i, "alive")]
        if alive and not any(alive):
            return False
        # Every instance's own is_ready(), when the model has one (newer Triton).
        return all(probe.ready() for probe in readiness_probes(loaded))

    # -- lookups ---------------------------------------------------------------

    def ready_models(self) -> list[tuple[ModelId, LoadedModel]]:
        """Every READY version with its model's identity, by namespace, then
        name, then version (what metrics and the drain at shutdown walk)."""
        out = []
        for record in sorted(list(self._records.values()), key=lambda r: r.id):
            for version in record.ready_versions():
                loaded = record.versions[version].loaded
                if loaded is not None:
                    out.append((record.id, loaded))
        return out

    def metric_models(self) -> list[tuple[ModelId, LoadedModel]]:
        """What the Prometheus series count: the READY versions (ready_models'
        order), then the objects that stopped serving and still drain (as long
        as Triton's do, their series stay)."""
        return self.ready_models() + list(self.series.draining.values())

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The READY version asked for ("" = the highest READY version)."""
        self._check_initialized()
        wanted = _parse_version(version)  # before the name, as Triton
        record = self._records.get(self.resolve(name))
        if record is None:
            raise NotFoundError(_unknown(name, "is not found"))
        if wanted is None:
            ready = record.ready_versions()
            if not ready:
                raise NotFoundError(_unknown(name, "has no available versions"))
            wanted = ready[-1]
        slot = record.versions.get(wanted)
        if slot is None:
            raise NotFoundError(_unknown(name, f"version {wanted} is not found"))
        if slot.state != READY or slot.loaded is None:
            raise UnavailableError(
                _unknown(name, f"version {wanted} is not at ready state")
            )
        return slot.loaded

    def ready_versions(self, key: str) -> list[int]:
        record = self._records.get(key)
        return record.ready_versions() if record is not None else []

    def metadata(self, name: str, version: str = "") -> dict[str, Any]:
        loaded = self.get(name, version)
        versions = (
            [loaded.version] if version else self.ready_versions(self.resolve(name))
        )
        return model_metadata(loaded, versions)

    def config(self, name: str, version: str = "") -> ModelConfig:
        return self.get(name, version).config

    def statistics(self, name: str = "", version: str = "") -> list[dict[str, Any]]:
        """``model_stats`` entries: all READY versions of ``name`` (or of every
        model when ``name`` is empty), or the one ``version``."""
        self._check_initialized()
        wanted = _parse_version(version)  # before the name, even none, as Triton
        if not name:
            records = sorted(list(self._records.values()), key=lambda r: r.id)
            return [
                self._stats_of(record.id.key, v)
                for record in records
                for v in record.ready_versions()
            ]
        try:
            key = self.resolve(name)
        except TritonXError:
            key = ""  # Triton answers "not available" for these names as well
        ready = self.ready_versions(key)
        if not ready:
            raise InvalidArgumentError(f"requested model '{name}' is not available")
        if wanted is None:
            return [self._stats_of(key, v) for v in ready]
        if wanted not in ready:
            raise InvalidArgumentError(
                f"requested model version is not available for model '{name}'"
            )
        return [self._stats_of(key, wanted)]

    def _stats_of(self, key: str, version: int) -> dict[str, Any]:
        record = self._records[key]
        loaded = record.versions[version].loaded
        assert loaded is not None  # READY versions always have a model
        return model_statistics(record.name, version, loaded.core.statistics())


def readiness_probes(loaded: LoadedModel) -> list[Any]:
    """The instances' backends/readiness.ReadinessProbe objects (python models with
    an is_ready(); passive instances included, as in Triton)."""
    probes = (getattr(i, "readiness", None) for i in loaded.instances)
    return [p for p in probes if p is not None]
