"""The tritonx server: model manager, frontends and metrics on one event loop.

``Server`` owns one ``tritonx._native.ModelRegistry`` (shared by the C++ gRPC server and
the Python HTTP frontend), the ``ModelManager`` that fills it, the HTTP and gRPC
frontends and the metrics endpoint. Startup and shutdown follow Triton's order and
log lines, so scripts written against ``tritonserver`` logs keep working:

* start: initialise (response cache, repository checks), load models per control
  mode, then gRPC, HTTP and metrics, each logging "Started <Service> at
  <addr>:<port>". ``--exit-on-error`` (the default) makes a failed initialisation or
  load fatal; without it a failed initialisation leaves a server that serves its
  endpoints, neither live nor ready, with nothing loaded (``start``);
* stop (SIGINT/SIGTERM): stop accepting on both frontends while in-flight requests
  finish (bounded by ``--exit-timeout-secs``), then unload every model so that
  ``finalize()`` runs, then close the metrics endpoint. Work still running past the
  timeout is abandoned: queued requests fail, and if a model is stuck in ``execute``
  the process exits non-zero without waiting for it (``run``), as Triton does.

Its options are ``tritonx.server_options.ServerOptions``; ``tritonx.frontends.factory``
builds its frontends from them and ``tritonx.server_metrics`` its metrics collectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol

from tritonx import caches, heap, loops
from tritonx.errors import (
    CODE_WORDS,
    InternalError,
    InvalidArgumentError,
    TritonXError,
    UnavailableError,
)
from tritonx.frontends import factory
from tritonx.frontends.log_settings import AppliedLogSettings
from tritonx.logging_setup import LOG_OBJECT
from tritonx.metrics import MetricsService, render
from tritonx.server_drain import drain_models, models_with_inflight
from tritonx.server_metrics import MetricsSources
from tritonx.startup_errors import EndpointStartError, report_startup_failure
from tritonx.tracing import start_tracing

if TYPE_CHECKING:
    from tritonx.frontends.sagemaker import SageMakerSettings
    from tritonx.frontends.vertex_ai import VertexAiRoutes
    from tritonx.server_options import ServerOptions

logger = logging.getLogger("tritonx.server")

# Time that unloading (finalize) may take after the exit timeout has run out.
UNLOAD_MARGIN_S = 3.0


class Frontend(Protocol):
    async def start(self) -> int: ...

    async def stop(self, grace: float) -> None: ...


def raise_open_file_limit() -> None:
    """Lift the soft open-file limit to the hard one: each connection takes a file
    descriptor, and the usual soft limit (1024) refuses clients long before the
    server is busy."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Server:
    """A running tritonx server; see the module docstring for the lifecycle."""

    def __init__(self, options: ServerOptions) -> None:
        # Imported here so that `tritonx-server --help` and flag errors work even
        # before the C++ core is built.
        from tritonx import _native
        from tritonx.repository import ManagerOptions, ModelManager

        self.options = options
        # Probe CUDA once, up front, so its one log line (GPU in use, or the fallback
        # to pageable memory and no streams) comes out before the model table.
        _native.probe_cuda()
        _native.start_log_pump()
        # What this server's models share: registry, arena, admission limit.
        pinned = options.pinned_memory_pool_byte_size
        self.context = _native.ServerContext(-1 if pinned is None else pinned)
        # KIND_GPU may name these; without a usable GPU, none (Triton's load error,
        # and KIND_AUTO becomes KIND_CPU).
        self.gpu_ids = _native.cuda_device_ids()
        for gpu in options.cuda_memory_pool_byte_size:
            if gpu not in self.gpu_ids:
                logger.warning(
                    "--cuda-memory-pool-byte-size names GPU %d, which does not exist",
                    gpu,
                )
        self.registry = self.context.registry
        self.manager = ModelManager(
            ManagerOptions(
                repositories=list(options.model_repositories),
                control_mode=options.model_control_mode,
                poll_secs=options.repository_poll_secs,
                startup_models=list(options.startup_models),
                strict_readiness=options.strict_readiness,
                namespacing=options.model_namespacing,
                exit_on_error=options.exit_on_error,
                auto_complete=options.auto_complete,
                config_name=options.model_config_name,
                load_threads=options.model_load_thread_count,
                load_retries=options.model_load_retry_count,
                repoagent_directory=options.repoagent_directory,
                backend_config={
                    **options.backend_config,
                    # Python stubs stop within the exit timeout (finalize, then
                    # kill); the backend directory reaches every backend as in
                    # Triton's command-line backend config.
                    "": {
                        "exit-timeout-secs": str(options.exit_timeout_secs),
                        "backend-directory": options.backend_directory,
                        **options.backend_config.get("", {}),
                    },
                },
                gpu_ids=list(self.gpu_ids),
                host_policies={k: dict(v) for k, v in options.host_policies.items()},
            ),
            self.registry,
            context=self.context,
        )
        self.frontends: dict[str, Frontend] = {}
        # The logging extension's settings, one store for both protocols.
        from tritonx.frontends.grpc import default_log_settings

        self.log_settings: Any = (
            AppliedLogSettings(options.log) if options.log else default_log_settings()
        )
        self.trace: Any = None  # tracing.TraceService, made at start
        self.metrics: MetricsService | None = None  # the command line's endpoint
        self._metrics_sources = MetricsSources(
            self.manager, self.context, options.metrics_config, len(self.gpu_ids)
        )
        self.ports: dict[str, int] = {}
        self._endpoint_count = 0  # names endpoints started later ("http#1", ...)
        self._stop_requested: asyncio.Event | None = None
        self._force_stop: asyncio.Event | None = None
        self._manager_started = False
        self._stopped = False
        # The store of a remote response cache (--cache-config redis,...), if any.
        self._cache_store: caches.ResponseStore | None = None
        # Set when stopping gave up on work (requests or executions past the timeout).
        self.abandoned_work = False

    # -- startup ---------------------------------------------------------------

    async def start(self) -> None:
        """Load models, then bind gRPC, HTTP and metrics. Raises on fatal errors."""
        if self.options.switch_interval_s is not None:
            sys.setswitchinterval(self.options.switch_interval_s)
        raise_open_file_limit()
        self.context.set_max_inflight_requests(self.options.max_inflight_requests)
        self.context.shared_memory.allowed = self.options.allow_client_shm
        metrics_config = self.options.metrics_config
        for error in metrics_config.errors:
            # Triton logs these at every model load; once is enough.
            logger.error("%s", error)
        if metrics_config.summary_latencies:
            self.context.configure_latency_summaries(
                list(metrics_config.summary_quantiles)
            )
        self.context.configure_rate_limiter(
            self.options.rate_limit == "execution_count",
            list(self.options.rate_limit_resources),
        )
        try:
            await self._initialize()
        except TritonXError as error:
            if self.options.exit_on_error:
                raise
            # Triton logs the error and serves its endpoints, neither live nor
            # ready, with no model loaded (SERVER_FAILED_TO_INITIALIZE).
            word = CODE_WORDS.get(error.code, "Internal")
            logger.error("%s: %s", word, error.message)
            self.manager.fail_initialization()
        # The cloud endpoints' environment, read before any model loads so that a
        # bad setting fails at once (None: endpoint off).
        sagemaker = factory.sagemaker_settings(self.options)
        try:
            vertex_ai = factory.vertex_ai_routes(self.options)
        except TritonXError as error:
            raise EndpointStartError("Vertex AI", error) from None
        self.trace = start_tracing(self.options.trace, self.context, self.manager)
        self._manager_started = True
        if self.manager.server_live():
            try:
                await self.manager.start()
            finally:
                self._log_model_table()  # Triton prints the table on failure too
        opts = self.options
        if opts.allow_grpc and not factory.grpc_server_built():
            # A build with -DTRITONX_ENABLE_GRPC=OFF (no grpc++ on the build machine)
            # serves HTTP and metrics; say so once rather than fail on the missing type.
            logger.warning(
                "gRPC is not served: this build of tritonx has no C++ gRPC server "
                "(built with TRITONX_ENABLE_GRPC=OFF). HTTP and metrics are served; "
                "to get gRPC, install grpc++ (./scripts/install-system-deps.sh) and "
                "reinstall tritonx, or install a wheel built by scripts/build-wheel.sh"
            )
        elif opts.allow_grpc:
            grpc_frontend = factory.grpc_frontend(self, opts)
            await self._start_frontend("grpc", grpc_frontend, opts.grpc_address)
            logger.info(
                "Started GRPCInferenceService at %s:%d",
                opts.grpc_address,
                self.ports["grpc"],
            )
        if opts.allow_http:
            await self._start_frontend(
                "http", factory.http_frontend(self, opts), opts.http_address
            )
            logger.info(
                "Started HTTPService at %s:%d", opts.http_address, self.ports["http"]
            )
        if sagemaker is not None:
            await self._start_sagemaker(sagemaker)
        if vertex_ai is not None:
            await self._start_vertex_ai(vertex_ai)
        if opts.allow_metrics:
            await self._start_metrics()

    async def _initialize(self) -> None:
        """What Triton's server initialisation does before any model loads: the
        response cache, then the repositories' checks. A failure here is the one
        that ``--exit-on-error=false`` survives as a server that failed to
        initialise (see ``start``); a model's failed load is the manager's."""
        if self.options.response_cache_byte_size:
            self.context.configure_response_cache(self.options.response_cache_byte_size)
        elif self.options.remote_response_cache is not None:
            await self._start_remote_cache(*self.options.remote_response_cache)
        if not self.options.model_repositories:
            raise InvalidArgumentError("--model-repository must be specified")
        for repo in self.options.model_repositories:
            await asyncio.get_running_loop().run_in_executor(
                None, self.manager.storage.check, str(repo)
            )

    async def _start_sagemaker(self, settings: SageMakerSettings) -> None:
        from tritonx.frontends.sagemaker import SAGEMAKER_ADDRESS

        frontend = factory.sagemaker_frontend(self, self.options, settings)
        await self._start_frontend("sagemaker", frontend, SAGEMAKER_ADDRESS)
        logger.info(
            "Started Sagemaker HTTPService at %s:%d",
            SAGEMAKER_ADDRESS,
            self.ports["sagemaker"],
        )

    async def _start_vertex_ai(self, routes: VertexAiRoutes) -> None:
        from tritonx.frontends.vertex_ai import VERTEX_AI_ADDRESS, default_model

        try:
            model = default_model(
                self.options.vertex_ai_default_model, self.manager.index(True)
            )
        except TritonXError as error:
            raise EndpointStartError("Vertex AI", error) from None
        frontend = factory.vertex_ai_frontend(self, self.options, routes, model)
        await self._start_frontend("vertex_ai", frontend, VERTEX_AI_ADDRESS)
        logger.info(
            "Started Vertex AI HTTPService at %s:%d",
            VERTEX_AI_ADDRESS,
            self.ports["vertex_ai"],
        )

    async def _start_frontend(self, name: str, frontend: Frontend, host: str) -> None:
        try:
            self.ports[name] = await frontend.start()
        except OSError as error:
            raise_as = {
                "grpc": "GRPC",
                "sagemaker": "Sagemaker",
                "vertex_ai": "Vertex AI",
            }.get(name, "HTTP")
            # Triton's last line: "failed to start <service> service:
            # Unavailable - Socket '<address>' already in use ".
            raise EndpointStartError(
                raise_as, UnavailableError(error.strerror or str(error))
            ) from error
        self.frontends[name] = frontend

    async def _start_metrics(self) -> None:
        opts = self.options
        host = opts.metrics_address or opts.http_address
        self.metrics = MetricsService(
            self._metrics_sources.endpoint_collector(opts), host, opts.metrics_port
        )
        try:
            self.ports["metrics"] = await self.metrics.start()
        except OSError as error:
            raise InternalError(
                f"failed to start Metrics service: {error.strerror or error}"
            ) from error
        logger.info("Started Metrics Service at %s:%d", host, self.ports["metrics"])

    def metrics_text(self) -> bytes:
        """The Prometheus text of /metrics (Vertex AI's ``metrics`` redirect,
        ``tritonx.api``). With the metrics endpoint off the model families remain
        (tritonserver's core keeps counting; only the CPU and GPU samplers are
        off)."""
        if self.metrics is not None:
            return render(self.metrics.collector.collect())
        return render(self._metrics_sources.collector().collect())

    # -- endpoints started later (tritonx.api.frontend) ------------------------

    async def start_endpoint(self, kind: str, opts: ServerOptions) -> tuple[str, int]:
        """Start one more endpoint on this running server: ``kind`` "http", "grpc"
        or "metrics", configured by the fields of ``opts`` for that kind (the
        flags' fields). Returns its name among the frontends and its port; it
        stops with the server, or earlier by ``stop_endpoint``."""
        if self._stopped:
            raise UnavailableError("the server is stopped")
        self._endpoint_count += 1
        name = f"{kind}#{self._endpoint_count}"
        frontend: Frontend
        if kind == "grpc":
            if not factory.grpc_server_built():
                raise UnavailableError(
                    "this build of tritonx has no C++ gRPC server "
                    "(built with TRITONX_ENABLE_GRPC=OFF)"
                )
            frontend, host, service = (
                factory.grpc_frontend(self, opts),
                opts.grpc_address,
                "GRPC",
            )
        elif kind == "http":
            frontend, host, service = (
                factory.http_frontend(self, opts),
                opts.http_address,
                "HTTP",
            )
        elif kind == "metrics":
            host = opts.metrics_address or opts.http_address
            frontend = MetricsService(
                self._metrics_sources.endpoint_collector(opts), host, opts.metrics_port
            )
            service = "Metrics"
        else:
            raise InvalidArgumentError(f"unknown endpoint kind '{kind}'")
        try:
            port = await frontend.start()
        except OSError as error:
            # The service's own words, as tritonfrontend raises them ("Socket
            # '<address>' already in use ").
            raise UnavailableError(error.strerror or str(error)) from error
        # The command line's words for each ("Started HTTPService at ...").
        started = {"GRPC": "GRPCInferenceService", "HTTP": "HTTPService"}
        logger.info(
            "Started %s at %s:%d", started.get(service, "Metrics Service"), host, port
        )
        self.frontends[name] = frontend
        self.ports[name] = port
        return name, port

    async def stop_endpoint(self, name: str, grace: float) -> None:
        """Stop an endpoint of ``start_endpoint``: it stops accepting at once and
        finishes its calls in flight within ``grace`` seconds. Nothing happens
        for one already stopped (or stopped with the server)."""
        frontend = self.frontends.pop(name, None)
        self.ports.pop(name, None)
        if frontend is not None:
            await frontend.stop(grace)

    def _log_model_table(self) -> None:
        from tritonx.repository.reports import model_table

        table = model_table(self.manager.index())
        if table:
            # A multi-line entry, as Triton prints its tables: no heading.
            logger.info("", extra={LOG_OBJECT: f"{table}\n"})

    # -- shutdown --------------------------------------------------------------

    async def stop(self) -> None:
        """Graceful stop: refuse new work, drain, unload models, close metrics."""
        if self._stopped:
            return
        self._stopped = True
        if not self._manager_started:
            # Failed before any model work (bad options): nothing to drain, but a
            # cloud repository's check may have made its (empty) mirror.
            self.manager.storage.close()
            await self._close_remote_cache()
            logger.info("No server context available. Exiting immediately.")
            return
        if not self.manager.server_live():
            # Failed to initialise: no model to drain or unload (Triton's stop of
            # a server that never got ready says nothing); the endpoints close.
            grace = float(self.options.exit_timeout_secs)
            closing = [fe.stop(grace) for fe in self.frontends.values()]
            await asyncio.gather(*closing, return_exceptions=True)
            self.frontends.clear()
            await self.manager.shutdown()
            await self._close_services()
            return
        grace = float(self.options.exit_timeout_secs)
        deadline = time.monotonic() + grace
        logger.info("Waiting for in-flight requests to complete.")
        # Frontends stop accepting at once and finish their in-flight calls within
        # the grace period; the pending-queue wait below covers the core's side.
        stops = [fe.stop(grace) for fe in self.frontends.values()]
        drain: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*stops, drain_models(self.manager, self.frontends, deadline))
        )
        # A second SIGINT/SIGTERM cuts the drain short (impatient Ctrl-C twice).
        self._force_stop = asyncio.Event()
        force: asyncio.Future[Any] = asyncio.ensure_future(self._force_stop.wait())
        await asyncio.wait(
            {drain, force},
            timeout=grace + 1.0,
            return_when=asyncio.FIRST_COMPLETED,
        )
        force.cancel()
        if not drain.done():
            logger.warning("Stopping with requests still in flight")
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await drain
            for frontend in self.frontends.values():
                with contextlib.suppress(Exception):
                    await frontend.stop(0.0)
            self.abandoned_work = True
        elif drain.exception() is not None:
            logger.error("error while stopping frontends: %s", drain.exception())
        if models_with_inflight(self.manager):
            self.abandoned_work = True  # unloading fails what is queued
        self.frontends.clear()
        logger.info("All models are stopped, unloading models")
        # Unloading waits for executions still running; a model stuck in execute()
        # would hold the process forever. Past the exit timeout (plus a short margin
        # for finalize()) the server gives up on it.
        unload_budget = max(deadline - time.monotonic(), 0.0) + UNLOAD_MARGIN_S
        unload = asyncio.ensure_future(self.manager.shutdown())
        try:
            await asyncio.wait_for(asyncio.shield(unload), unload_budget)
        except TimeoutError:
            logger.error(
                "Exit timeout expired with model executions still running; "
                "exiting without waiting for them"
            )
            self.abandoned_work = True
        except Exception:
            logger.exception("error while unloading models")
        await self._close_services()

    async def _close_services(self) -> None:
        """After the models: metrics sampling, the response cache, tracing and the
        metrics endpoint."""
        await self._metrics_sources.stop_sampling()
        await self._close_remote_cache()
        if self.trace is not None:  # writes the traces still buffered
            await asyncio.get_running_loop().run_in_executor(None, self.trace.stop)
        if self.metrics is not None:
            await self.metrics.stop()
            self.metrics = None

    async def _start_remote_cache(self, name: str, settings: dict[str, str]) -> None:
        """Connects the store (off the loop: connecting may wait on the network)
        and makes it the server's response cache, before any model loads."""
        loop = asyncio.get_running_loop()
        store = await loop.run_in_executor(None, caches.create_store, name, settings)
        self._cache_store = store
        self.context.configure_remote_response_cache(store, store.workers)

    async def _close_remote_cache(self) -> None:
        """After the models: queued lookups become misses, then the store closes."""
        store, self._cache_store = self._cache_store, None
        if store is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.context.close_response_cache)
        await loop.run_in_executor(None, store.close)

    async def _stop_while_loading(self, start: asyncio.Future[None]) -> None:
        """SIGINT/SIGTERM before the start-up models have loaded: no endpoint is
        opened, the models that loaded are unloaded (finalize runs), and the loads
        still running are abandoned, since a model's ``initialize`` cannot be
        interrupted; the process then leaves without joining their threads. Waiting
        for them instead (minutes for large weights) ignored Ctrl-C and outlasted
        Kubernetes' grace period; Triton 2.51 dies at once from the signal."""
        logger.warning(
            "Stopping before the server started: loads still running are abandoned"
        )
        start.cancel()
        with contextlib.suppress(BaseException):
            await start
        self.manager.abandon_loads()
        self.abandoned_work = True
        await self.stop()

    # -- running ---------------------------------------------------------------

    def request_stop(self, signum: int | None = None) -> None:
        if signum is not None:
            logger.info("Signal (%d) received.", signum)
        if self._force_stop is not None:
            self._force_stop.set()  # already draining: stop waiting
        elif self._stop_requested is not None:
            self._stop_requested.set()

    async def serve(self) -> int:
        """Start, wait for SIGINT/SIGTERM, stop. Returns the process exit code."""
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.request_stop, signum)
        start = asyncio.ensure_future(self.start())
        signalled = asyncio.ensure_future(self._stop_requested.wait())
        await asyncio.wait({start, signalled}, return_when=asyncio.FIRST_COMPLETED)
        signalled.cancel()
        if not start.done() and not self.manager.started:
            await self._stop_while_loading(start)
            return 1
        try:
            await start
        except Exception as error:
            if not isinstance(error, (TritonXError, EndpointStartError)):
                logger.exception("unexpected error during startup")
            await self.stop()
            report_startup_failure(error)
            return 1
        heap.freeze_long_lived()
        flusher = asyncio.ensure_future(_flush_core_logs())
        try:
            await self._stop_requested.wait()
        finally:
            flusher.cancel()
        await self.stop()
        _write_core_logs()
        return 1 if self.abandoned_work else 0


# How often messages the core logged from its own threads are written.
CORE_LOG_FLUSH_S = 0.2


def _write_core_logs() -> None:
    """Writes what the core logged from threads without the GIL (gRPC, schedulers):
    those messages wait for a thread of ours to hold it."""
    try:
        from tritonx import _native
    except ImportError:  # core not built
        return
    _native.release_pending_refs()


async def _flush_core_logs() -> None:
    # Without Python traffic (a gRPC-only load on stub-process models) nothing else
    # would write them until the server stops.
    while True:
        await asyncio.sleep(CORE_LOG_FLUSH_S)
        _write_core_logs()


def run(options: ServerOptions) -> int:
    """Run a server on a fresh (uv)loop until a signal stops it."""

    servers: list[Server] = []

    async def main() -> int:
        try:
            server = Server(options)
        except (TritonXError, ImportError) as error:
            report_startup_failure(error)
            return 1
        servers.append(server)
        return await server.serve()

    code = loops.run(main())
    if servers and servers[0].abandoned_work:
        # Threads stuck in model code cannot be joined, and the interpreter's exit
        # would wait for them (thread pools join at exit): leave at once.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 1)
    return code
