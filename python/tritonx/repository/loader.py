"""Building and tearing down one model version. Everything here blocks (backend
code, file I/O, joining worker threads) and runs on the manager's thread pool."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonx.backends.base import InstanceContext
from tritonx.backends.registry import DEFAULT_BACKEND_DIRECTORY, resolve_backend
from tritonx.config import (
    ModelConfig,
    config_to_json,
    model_file_path,
    model_spec_from_config,
    rate_limits_from_config,
    scheduler_config_from_config,
)
from tritonx.config.loader import check_model_tensors, completed_by_backend
from tritonx.config.to_core import ensemble_steps_from_config
from tritonx.host_policy import HostPolicies, binding_for_creation
from tritonx.repository.batch_strategy import load_batch_strategy
from tritonx.repository.placement import (
    core_executors,
    executor_ids,
    instance_contexts,
    placements,
    warmup_targets,
)
from tritonx.repository.records import LoadedModel
from tritonx.repository.warmup import run_warmup

log = logging.getLogger("tritonx.repository")

# After a model leaves the registry, a request that looked it up just before may
# still be on its way to submit(); wait this long before trusting the in-flight count.
_DRAIN_GRACE_S = 0.05
# How often an unload that is still waiting for requests says so in the log, and
# looks whether the shutdown told it to give up.
_DRAIN_REPORT_S = 30.0
_DRAIN_POLL_S = 0.5


@dataclass(frozen=True)
class LoadSettings:
    """What a version load needs besides the model's own config."""

    auto_complete: bool
    backend_config: dict[str, dict[str, str]]
    context: Any = None  # the server's _native.ServerContext; None: the default
    control: Any = None  # model_control.ModelControl of the manager loading
    host_policies: HostPolicies = field(default_factory=dict)  # --host-policy


def _backend_settings(
    backend_config: dict[str, dict[str, str]], backend: str
) -> dict[str, str]:
    # Global settings (no backend name) apply unless the backend overrides them.
    return {**backend_config.get("", {}), **backend_config.get(backend, {})}


# Instances created at once by one load (more wait for a thread).
_MAX_PARALLEL_INSTANCES = 16


def _backend_directory(settings: LoadSettings) -> Path:
    # The server puts it among the global backend settings, as tritonserver does.
    configured = settings.backend_config.get("", {}).get("backend-directory")
    return Path(configured or DEFAULT_BACKEND_DIRECTORY)


def create_instances(
    backend_model: Any, contexts: list[InstanceContext], policies: HostPolicies
) -> list[Any]:
    """The backend's instances for ``contexts`` (placement.py names and places
    them), or for each that failed its exception. Each instance is created on a
    thread bound to its host policy, as Triton creates it (in parallel when the
    backend model sets ``parallel_instance_creation``); a bad policy value fails
    that instance. Every creation is waited for before the caller raises, so none
    is still starting when the ones that were made are unloaded."""

    def create(ictx: InstanceContext) -> Any:
        try:
            with binding_for_creation(policies, ictx.host_policy) as binding:
                ictx.host_binding = binding
                return backend_model.create_instance(ictx)
        except BaseException as error:
            return error

    if len(contexts) > 1 and getattr(
        backend_model, "parallel_instance_creation", False
    ):
        # A thread each, for backends that allow it (the python backend, as in
        # Triton): a model whose ``initialize`` takes seconds loads all its
        # instances in about the time of one.
        workers = min(len(contexts), _MAX_PARALLEL_INSTANCES)
        with ThreadPoolExecutor(workers, thread_name_prefix="tritonx-instance") as pool:
            return list(pool.map(create, contexts))
    return [create(ictx) for ictx in contexts]


def first_failure(created: list[Any]) -> BaseException | None:
    """The first exception create_instances returned, in instance order."""
    return next((c for c in created if isinstance(c, BaseException)), None)


def build_version(
    config: ModelConfig,
    version: int,
    model_dir: Path,
    repository: Path,
    settings: LoadSettings,
) -> LoadedModel:
    """Load one version: backend model, instances, core Model, warmup."""
    from tritonx import _native
    from tritonx.backends.base import ModelContext

    started = time.monotonic()
    read_config = config
    config = _copy(config)  # auto-complete may change it per version
    if config.HasField("ensemble_scheduling"):
        return _build_ensemble(config, version, model_dir, settings, started)
    backend, settings_name = resolve_backend(config, _backend_directory(settings))
    ctx = ModelContext(
        name=config.name,
        version=version,
        config=config,
        config_json=config_to_json(config),
        model_dir=model_dir,
        version_dir=model_dir / str(version),
        model_file=model_file_path(config, model_dir, version),
        repository=repository,
        backend_config=_backend_settings(settings.backend_config, settings_name),
        server=settings.context,
        model_control=settings.control,
    )
    complete = getattr(backend, "auto_complete_config", None)
    if settings.auto_complete and complete is not None:
        complete(config, ctx)
        ctx.config_json = config_to_json(config)
    if completed_by_backend(config, settings.auto_complete):
        check_model_tensors(config)  # deferred by load_model_config
    # Before the backend: an unreadable label file fails the load with nothing to undo.
    spec = model_spec_from_config(config, version, model_dir)
    scheduler = scheduler_config_from_config(config, model_dir)
    scheduler.batch_strategy = load_batch_strategy(
        config, model_dir, version, ctx.config_json
    )
    backend_model = backend.load_model(ctx)
    try:
        wanted = placements(config)
        contexts, streams = instance_contexts(config, wanted)
        instances = create_instances(backend_model, contexts, settings.host_policies)
        failure = first_failure(instances)
        if failure is not None:
            raise failure
        executors = core_executors(instances, contexts, config)
        core = _native.Model(
            spec,
            scheduler,
            executors,
            settings.context,
            rate_limits_from_config(config),
        )
        try:
            # Passive instances get no warmup (Triton's rule): they get no work.
            run_warmup(core, config, model_dir, warmup_targets(executors, contexts))
        except BaseException:
            core.stop()
            raise
    except BaseException:
        _unload_backend(backend_model, config.name, version)
        raise
    return LoadedModel(
        name=config.name,
        version=version,
        config=config,
        core=core,
        backend_model=backend_model,
        instances=instances,
        streams=streams,
        read_config=_copy(read_config),
        placements=wanted,
        contexts=contexts,
        executor_ids=executor_ids(instances, contexts, config),
        next_executor=len(executors),
        model_dir=model_dir,
        load_seconds=time.monotonic() - started,
    )


def _build_ensemble(
    config: ModelConfig,
    version: int,
    model_dir: Path,
    settings: LoadSettings,
    started: float,
) -> LoadedModel:
    """An ensemble has no backend and no instances: its core Model runs the steps
    on the composing models it finds in the server's registry."""
    from tritonx import _native

    core = _native.make_ensemble_model(
        model_spec_from_config(config, version),
        ensemble_steps_from_config(config),
        settings.context,
    )
    return LoadedModel(
        name=config.name,
        version=version,
        config=config,
        core=core,
        model_dir=model_dir,
        load_seconds=time.monotonic() - started,
    )


def _copy(config: ModelConfig) -> ModelConfig:
    copied = ModelConfig()
    copied.CopyFrom(config)
    return copied


def _unload_backend(backend_model: Any, name: str, version: int) -> None:
    if backend_model is None:  # an ensemble
        return
    try:
        backend_model.unload()
    except Exception:
        log.exception("error while unloading model '%s' version %d", name, version)


def retire_version(
    loaded: LoadedModel, drain: bool = True, abandon: threading.Event | None = None
) -> None:
    """Stop a version that is no longer in the registry, then let the backend
    release it. With ``drain`` its requests in flight (queued, executing, streaming
    from a decoupled model) complete first, as in Triton; without, queued ones fail
    (shutdown, after the server's own grace period). ``abandon`` set (the shutdown
    came) ends a drain that is still waiting as if ``drain`` had been False."""
    core = loaded.core
    if drain:
        time.sleep(_DRAIN_GRACE_S)
        waited = 0.0
        while not core.wait_idle(_DRAIN_POLL_S):
            if abandon is not None and abandon.is_set():
                drain = False
                break
            waited += _DRAIN_POLL_S
            if waited >= _DRAIN_REPORT_S:
                waited = 0.0
                log.warning(
                    "unloading '%s' version %d: waiting for %d requests in flight",
                    loaded.name,
                    loaded.version,
                    core.inflight_count(),
                )
    core.stop(drain=drain)
    # Instances an update retired are finalized by threads of their own, which the
    # stop has released: the backend unloads the rest after them.
    for thread in loaded.retiring:
        thread.join()
    _unload_backend(loaded.backend_model, loaded.name, loaded.version)
    loaded.streams = []  # the instances are gone: their CUDA streams may go too
    log.info("successfully unloaded '%s' version %d", loaded.name, loaded.version)
