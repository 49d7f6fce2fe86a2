"""``Server`` and ``Options``: a tritonx server in this process, without sockets.

``Server.start`` builds a ``tritonx.server.Server`` with every endpoint turned off
(same context, registry and model manager as ``tritonx-server``) and runs its
asyncio side on a loop thread that this object owns. Synchronous methods hand
their work to that loop (``asyncio.run_coroutine_threadsafe``) and wait; they
never touch the caller's own loop. Inference does not go through the loop at all
(see ``_model.py``). ``stop`` drains, unloads every model (``finalize`` runs),
stops the loop and joins its thread. Thread safe: a lock guards start and stop;
everything else reads state set before the server became visible.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import enum
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tritonx.api._model import Model
from tritonx.errors import InvalidArgumentError, UnavailableError

T = TypeVar("T")
logger = logging.getLogger("tritonx.api")


class ModelControlMode(enum.IntEnum):
    """Triton's ``TRITONSERVER_ModelControlMode`` members."""

    NONE = 0
    POLL = 1
    EXPLICIT = 2


class RateLimitMode(enum.IntEnum):
    """Triton's ``TRITONSERVER_RateLimitMode`` members."""

    OFF = 0
    EXEC_COUNT = 1


class LogFormat(enum.IntEnum):
    """Triton's ``TRITONSERVER_LogFormat`` members."""

    DEFAULT = 0
    ISO8601 = 1


class InstanceGroupKind(enum.IntEnum):
    """Triton's ``TRITONSERVER_InstanceGroupKind`` members."""

    AUTO = 0
    CPU = 1
    GPU = 2
    MODEL = 3


@dataclass
class ModelLoadDeviceLimit:
    """A device's share of memory that loads may use (accepted, as
    ``--model-load-gpu-limit``; tritonx does not account device memory)."""

    kind: InstanceGroupKind
    device: int
    fraction: float


@dataclass
class RateLimiterResource:
    """How many of a rate limiter resource there are (``--rate-limit-resource``);
    ``device`` -1 for every device."""

    name: str
    count: int
    device: int = -1


@dataclass
class Options:
    """Server options, with Triton's field names (``repository_poll_secs`` is a
    tritonx addition: Triton's in-process API has no poll interval)."""

    model_repository: str | list[str] = field(default_factory=list)
    server_id: str = "triton"
    model_control_mode: ModelControlMode = ModelControlMode.NONE
    startup_models: list[str] = field(default_factory=list)
    strict_model_config: bool = False
    pinned_memory_pool_size: int = 1 << 28
    exit_on_error: bool = True
    strict_readiness: bool = True
    exit_timeout: int = 30
    model_load_thread_count: int = 4
    model_load_retry_count: int = 0
    model_namespacing: bool = False
    log_verbose: int = 0
    metrics: bool = True
    backend_directory: str | None = None
    repo_agent_directory: str = "/opt/tritonserver/repoagents"
    backend_configuration: dict[str, dict[str, str]] = field(default_factory=dict)
    rate_limiter_mode: RateLimitMode = RateLimitMode.OFF
    rate_limiter_resources: list[RateLimiterResource] = field(default_factory=list)
    # {"local": {"size": 1048576}} or {"redis": {"host": ..., "port": ...}}.
    cache_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache_directory: str = "/opt/tritonserver/caches"
    # {"policy name": {"cpu-cores": "0-3", "numa-node": "0"}}.
    host_policies: dict[str, dict[str, str]] = field(default_factory=dict)
    repository_poll_secs: int = 15
    # Logging: any of these set configures the "tritonx" logger as tritonserver's
    # --log-* flags do (Triton's format, stderr or log_file); none set leaves
    # Python's logging configuration alone. Levels cascade as in Triton: verbose
    # implies info, info implies warn, warn implies error.
    log_file: str | None = None
    log_info: bool = False
    log_warn: bool = False
    log_error: bool = False
    log_format: LogFormat = LogFormat.DEFAULT
    # For the Metrics endpoint (tritonx.api.frontend) and metrics(): samplers and
    # their interval (ms), and --metrics-config settings by config name.
    cpu_metrics: bool = True
    gpu_metrics: bool = True
    metrics_interval: int = 2000
    metrics_configuration: dict[str, dict[str, str]] = field(default_factory=dict)
    cuda_memory_pool_sizes: dict[int, int] = field(default_factory=dict)
    # Accepted as Triton's and without effect, as their flags are.
    min_supported_compute_capability: float = 6.0
    buffer_manager_thread_count: int = 0
    enable_peer_access: bool = True
    model_load_device_limits: list[ModelLoadDeviceLimit] = field(default_factory=list)

    def _server_options(self) -> Any:
        """The ``tritonx.server_options.ServerOptions`` (no endpoints); TypeError
        or InvalidArgumentError for bad values, as Triton's ``start``."""
        from tritonx.server_options import ServerOptions

        repos = self.model_repository
        if not repos:
            raise InvalidArgumentError("Model repository must be specified.")
        if isinstance(repos, (str, Path)):
            repos = [repos]
        if not isinstance(repos, list) or not all(
            isinstance(r, (str, Path)) for r in repos
        ):
            raise TypeError("model_repository must be a str or a list of str")
        if not isinstance(self.server_id, str):
            raise TypeError("server_id must be a str")
        mode = ModelControlMode(self.model_control_mode)
        options = ServerOptions(
            model_repositories=list(repos),
            model_control_mode=mode.name.lower(),
            startup_models=list(self.startup_models),
            repository_poll_secs=int(self.repository_poll_secs),
            exit_on_error=bool(self.exit_on_error),
            strict_readiness=bool(self.strict_readiness),
            model_namespacing=bool(self.model_namespacing),
            exit_timeout_secs=int(self.exit_timeout),
            auto_complete=not self.strict_model_config,
            model_load_thread_count=int(self.model_load_thread_count),
            model_load_retry_count=int(self.model_load_retry_count),
            repoagent_directory=self.repo_agent_directory,
            backend_config={k: dict(v) for k, v in self.backend_configuration.items()},
            server_id=self.server_id,
            allow_http=False,
            allow_grpc=False,
            allow_metrics=False,
            pinned_memory_pool_byte_size=int(self.pinned_memory_pool_size),
            # The caller's process: leave its interpreter settings alone.
            switch_interval_s=None,
        )
        if self.backend_directory is not None:
            options.backend_directory = self.backend_directory
        self._limits_and_caches(options)
        self._metrics(options)
        options.log = self._log_options()
        return options

    def _metrics(self, options: Any) -> None:
        from tritonx.metrics_config import MetricsConfig

        options.allow_cpu_metrics = bool(self.cpu_metrics)
        options.allow_gpu_metrics = bool(self.gpu_metrics)
        options.metrics_interval_ms = float(self.metrics_interval)
        options.metrics_config = MetricsConfig.parse(
            [
                (str(setting), str(value))
                for settings in self.metrics_configuration.values()
                for setting, value in settings.items()
            ]
        )
        options.cuda_memory_pool_byte_size = {
            int(gpu): int(size) for gpu, size in self.cuda_memory_pool_sizes.items()
        }

    def _log_options(self) -> Any:
        """The --log-* flags these options amount to; None when none is set."""
        from tritonx.logging_setup import LogOptions

        verbose = int(self.log_verbose)
        info = self.log_info or verbose > 0
        warn = self.log_warn or info
        error = self.log_error or warn
        if not (error or self.log_file):
            return None
        return LogOptions(
            verbose=verbose,
            info=info,
            warning=warn,
            error=error,
            format="ISO8601"
            if LogFormat(self.log_format) == LogFormat.ISO8601
            else "default",
            file=Path(self.log_file) if self.log_file else None,
        )

    def _limits_and_caches(self, options: Any) -> None:
        """Rate limiter, response cache and host policies, read by the same
        parsers as tritonx-server's flags (so with the same checks and messages)."""
        from tritonx import cli_limits

        caches = {
            name: {key: str(value) for key, value in pairs.items()}
            for name, pairs in self.cache_config.items()
        }
        policies = [
            f"{name},{key}={value}"
            for name, pairs in self.host_policies.items()
            for key, value in pairs.items()
        ]
        try:
            cache = cli_limits.choose_cache(caches)
            options.host_policies = cli_limits.parse_host_policies(policies)
        except cli_limits.FlagError as error:
            # The flag parser's wording less its command-line framing.
            detail = error.detail.rpartition("error: creating server: ")[2]
            for word in ("Invalid argument - ", "Internal - "):
                detail = detail.removeprefix(word)
            raise InvalidArgumentError(detail) from None
        if cache is not None:
            if cache.local_size:
                options.response_cache_byte_size = cache.local_size
            else:
                options.remote_response_cache = (cache.name, cache.settings)
        options.rate_limit = (
            "execution_count"
            if RateLimitMode(self.rate_limiter_mode) == RateLimitMode.EXEC_COUNT
            else "off"
        )
        options.rate_limit_resources = [
            (r.name, int(r.count), int(r.device)) for r in self.rate_limiter_resources
        ]


class ModelDictionary(dict[tuple[str, int], Model]):
    """``Server.models()``: (name, version) -> Model; a bare name gives the model
    with version -1 (KeyError for names not in the repository)."""

    def __init__(self, server: Server, models: list[Model]) -> None:
        super().__init__()
        for model in models:
            self[(model.name, model.version)] = model
        self._server = server
        self._names = {name for name, _ in self}

    def __getitem__(self, key: Any) -> Model:
        if isinstance(key, tuple):
            try:
                return dict.__getitem__(self, key)
            except KeyError:
                raise KeyError(f"Unknown Model: {key}") from None
        if key in self._names:
            return Model(self._server, key, -1)
        raise KeyError(f"Unknown Model: {key}")


class _Running:
    """What a started server holds: its loop thread and the tritonx server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="tritonx-api-loop", daemon=True
        )
        self.core: Any = None  # tritonx.server.Server, made on the loop

    @property
    def manager(self) -> Any:
        return self.core.manager

    @property
    def registry(self) -> Any:
        return self.core.registry

    def call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


_UNLOADED_STATES = (None, "UNAVAILABLE")

# Servers started and not stopped. A process that exits without stop() would tear
# the core down under its still-running model threads (std::terminate); the exit
# hook stops them first, as stop() would.
_RUNNING: set[_Running] = set()
_RUNNING_LOCK = threading.Lock()


def _stop_at_exit() -> None:
    with _RUNNING_LOCK:
        left = list(_RUNNING)
        _RUNNING.clear()
    for running in left:
        try:
            running.call(running.core.stop)
            running.close()
        except Exception:
            logger.exception("stopping an in-process server at exit")


# Stopping needs the loop's default executor, which concurrent.futures shuts down
# in threading's exit hooks, before atexit's; threading's hooks run newest first,
# so one registered now (after asyncio imported concurrent.futures) runs before it.
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_stop_at_exit)
else:  # pragma: no cover - every CPython tritonx supports has it
    atexit.register(_stop_at_exit)


class Server:
    """An in-process tritonx server (Triton's ``tritonserver.Server``)."""

    def __init__(self, options: Options | None = None, **kwargs: Any) -> None:
        self.options = options if options is not None else Options(**kwargs)
        self._lock = threading.Lock()
        self._state: _Running | None = None

    def _running(self) -> _Running:
        state = self._state
        if state is None:
            raise InvalidArgumentError("Server not started")
        return state

    def _query(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the manager's loop thread (it owns the state read)."""

        async def run() -> T:
            return fn(*args)

        return self._running().call(run)

    # -- lifecycle -------------------------------------------------------------------

    def start(
        self,
        wait_until_ready: bool = False,
        polling_interval: float = 0.1,
        timeout: float | None = None,
    ) -> Server:
        """Load the models (per the control mode); raises on bad options or a
        failed startup (e.g. InternalError for a repository that does not exist).
        ``wait_until_ready``: poll ``ready()`` until true (UnavailableError after
        ``timeout`` seconds)."""
        with self._lock:
            if self._state is not None:
                raise InvalidArgumentError("Server already started")
            server_options = self.options._server_options()
            if server_options.log is not None:
                from tritonx import logging_setup

                logging_setup.configure(server_options.log)
            running = _Running()
            running.thread.start()
            try:
                running.call(lambda: self._start_core(running, server_options))
            except BaseException:
                if running.core is not None:
                    running.call(running.core.stop)
                running.close()
                raise
            self._state = running
            with _RUNNING_LOCK:
                _RUNNING.add(running)
        start = time.monotonic()
        while wait_until_ready and not self.ready():
            if timeout is not None and time.monotonic() - start >= timeout:
                raise UnavailableError("Timeout before ready")
            time.sleep(polling_interval)
        return self

    @staticmethod
    async def _start_core(running: _Running, options: Any) -> None:
        from tritonx.server import Server as CoreServer

        running.core = CoreServer(options)
        await running.core.start()

    def stop(self) -> None:
        """Drain in-flight requests (up to ``exit_timeout``), unload every model so
        that ``finalize`` runs, then stop the loop thread."""
        with self._lock:
            running = self._running()
            self._state = None
            with _RUNNING_LOCK:
                _RUNNING.discard(running)
            try:
                running.call(running.core.stop)
            finally:
                running.close()

    # -- server queries ----------------------------------------------------------------

    def live(self) -> bool:
        """Triton's liveness: running, and not failed to initialise (a missing
        repository with ``exit_on_error=False``)."""
        running = self._running()
        return running.thread.is_alive() and bool(running.manager.server_live())

    def ready(self) -> bool:
        """Triton's readiness (with ``strict_readiness``: every model ready)."""
        return bool(self._running().manager.server_ready())

    def metadata(self) -> dict[str, Any]:
        from tritonx import __version__
        from tritonx.frontends.base import server_extensions

        self._running()
        return {
            "name": self.options.server_id,
            "version": __version__,
            "extensions": list(server_extensions()),
        }

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics`` (model families; no CPU/GPU
        samplers in process)."""
        core = self._running().core
        text: bytes = self._query(core.metrics_text)
        return text.decode()

    # -- models ------------------------------------------------------------------------

    def model(self, model_name: str, model_version: int = -1) -> Model:
        """A Model handle; not checked until used."""
        return Model(self, model_name, model_version)

    def models(self, exclude_not_ready: bool = False) -> ModelDictionary:
        """Every model of the repositories, keyed (name, version); versions never
        loaded appear as (name, -1) with state None."""
        running = self._running()
        rows: list[dict[str, Any]] = self._query(
            running.manager.index, exclude_not_ready
        )
        models = [
            Model(
                self,
                row["name"],
                int(row["version"]) if row.get("version") else -1,
                row.get("state"),
                row.get("reason"),
            )
            for row in rows
        ]
        return ModelDictionary(self, models)

    def load(
        self,
        model_name: str,
        parameters: dict[str, str | int | bool | bytes] | None = None,
    ) -> Model:
        """Load (or reload) a model and wait until it is done; EXPLICIT mode
        only. ``parameters``: "config" (JSON text overriding config.pbtxt) and
        "file:<version>/<name>" (bytes) to load from those files instead."""
        config: str | None = None
        files: dict[str, bytes] = {}
        for key, value in (parameters or {}).items():
            if key == "config" and isinstance(value, str):
                config = value
            elif key.startswith("file:") and isinstance(value, (bytes, str)):
                files[key[len("file:") :]] = (
                    value.encode() if isinstance(value, str) else value
                )
            else:
                raise InvalidArgumentError(
                    f"unsupported load parameter '{key}' of type {type(value).__name__}"
                )
        running = self._running()
        running.call(lambda: running.manager.load(model_name, config, files or None))
        return self.model(model_name)

    def unload(
        self,
        model: str | Model,
        unload_dependents: bool = False,
        wait_until_unloaded: bool = False,
        polling_interval: float = 0.1,
        timeout: float | None = None,
    ) -> None:
        """Unload every version of a model (EXPLICIT mode only); returns once it no
        longer serves (its requests in flight still finish, as in Triton), or
        with ``wait_until_unloaded`` once it is unloaded (UnavailableError past
        ``timeout``)."""
        running = self._running()
        name = model.name if isinstance(model, Model) else model
        future = asyncio.run_coroutine_threadsafe(
            running.manager.begin_unload(name, unload_dependents), running.loop
        )
        try:
            future.result(timeout if wait_until_unloaded else None)
        except concurrent.futures.TimeoutError:
            raise UnavailableError(f"Timeout before model '{name}' unloaded") from None
        if not wait_until_unloaded:
            return
        keys = [key for key in self.models() if key[0] == name]
        start = time.monotonic()
        while not self._unloaded(keys):
            if timeout is not None and time.monotonic() - start >= timeout:
                raise UnavailableError(f"Timeout before model '{name}' unloaded")
            time.sleep(polling_interval)

    # -- repositories ------------------------------------------------------------------

    def register_model_repository(
        self, repository_path: str, name_mapping: dict[str, str] | None = None
    ) -> None:
        """Add a repository while running (EXPLICIT mode, as the repository
        extension's register call); ``name_mapping``: sub-directory -> model name.
        Triton's errors: UnsupportedError in other modes, InvalidArgumentError for
        a path that is not a repository, AlreadyExistsError for one already there
        or a model name already mapped."""
        manager = self._running().manager
        self._query(manager.register_repository, str(repository_path), name_mapping)

    def unregister_model_repository(self, repository_path: str) -> None:
        """Drop a repository and its mappings (EXPLICIT mode); models loaded from
        it stay loaded. InvalidArgumentError for a path not registered."""
        manager = self._running().manager
        self._query(manager.unregister_repository, str(repository_path))

    def poll_model_repository(self) -> None:
        """Rescan the repositories now and load, reload or unload what changed,
        returning when done (POLL mode; UnavailableError "polling is disabled"
        otherwise)."""
        running = self._running()
        running.call(running.manager.poll_now)

    def _unloaded(self, keys: list[tuple[str, int]]) -> bool:
        models = self.models()
        return all(
            key not in models or models[key].state in _UNLOADED_STATES for key in keys
        )
