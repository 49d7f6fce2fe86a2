"""The frontends of a server, built from a ``ServerOptions``.

The KServe ones (the gRPC server in C++, the HTTP server of ``--http-engine``) are
shared by the server's own start (the command line's endpoints) and
``tritonx.api.frontend`` (endpoints started on a running in-process server), so that
both configure them the same way. The cloud endpoints (SageMaker, Vertex AI), which
only the command line starts, are built here too: they follow ``--http-engine`` as
HTTP does, so the engine's choice stays in one place."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonx.errors import InvalidArgumentError, TritonXError

if TYPE_CHECKING:
    from tritonx.frontends.sagemaker import SageMakerSettings
    from tritonx.frontends.vertex_ai import VertexAiRoutes
    from tritonx.server import Frontend, Server
    from tritonx.server_options import ServerOptions

logger = logging.getLogger("tritonx.server")


def read_pem(path: Path | str | None) -> str:
    """A PEM file's text ("" for none); InvalidArgumentError when unreadable."""
    if path is None or path == "":
        return ""
    try:
        return Path(path).read_text()
    except OSError as error:
        raise InvalidArgumentError(
            f"failed to read {path}: {error.strerror}"
        ) from error


def grpc_server_built() -> bool:
    from tritonx import _native

    return _native.GrpcServer is not None


def grpc_frontend(server: Server, opts: ServerOptions) -> Frontend:
    """The C++ gRPC server with ``opts``' grpc_* settings."""
    from tritonx.frontends.grpc import GrpcFrontend

    return GrpcFrontend(
        server.manager,
        server.registry,
        host=opts.grpc_address,
        port=opts.grpc_port,
        server_id=opts.server_id,
        infer_compression_level=opts.grpc_infer_response_compression_level,
        channel_args={
            **opts.grpc_channel_args,
            "grpc.so_reuseport": int(opts.grpc_reuse_port),
        },
        # --grpc-use-ssl-mutual implies SSL, as in tritonserver.
        use_ssl=opts.grpc_use_ssl or opts.grpc_use_ssl_mutual,
        use_mutual_auth=opts.grpc_use_ssl_mutual,
        server_cert=read_pem(opts.grpc_server_cert),
        server_key=read_pem(opts.grpc_server_key),
        root_cert=read_pem(opts.grpc_root_cert),
        restricted_protocols=opts.grpc_restricted_protocols,
        header_forward_pattern=opts.grpc_header_forward_pattern,
        log_settings=server.log_settings,
        trace_settings=server.trace.settings if server.trace is not None else None,
        shared_memory=server.context.shared_memory,
        max_stream_backlog_bytes=opts.grpc_max_stream_backlog_bytes,
    )


def http_engine(opts: ServerOptions) -> str:
    """--http-engine with "auto" resolved: native unless this build has none."""
    engine = opts.http_engine
    if engine == "auto":
        from tritonx import _native

        engine = "native" if _native.HttpServer is not None else "python"
    return engine


def http_frontend(server: Server, opts: ServerOptions) -> Frontend:
    """The HTTP frontend of ``opts.http_engine``, with the options both engines
    share."""
    common: dict[str, Any] = {
        "host": opts.http_address,
        "port": opts.http_port,
        "server_id": opts.server_id,
        "max_input_size": opts.http_max_input_size,
        "reuse_port": opts.http_reuse_port,
        "restricted_apis": opts.http_restricted_apis,
        "header_forward_pattern": opts.http_header_forward_pattern or None,
        "max_header_size": opts.http_max_header_size,
        "max_header_count": opts.http_max_header_count,
        "shared_memory": server.context.shared_memory,
        "log_settings": server.log_settings,
        "trace_settings": server.trace.settings if server.trace is not None else None,
    }
    https = opts.http_use_ssl or opts.http_use_ssl_mutual
    engine = http_engine(opts)
    if engine == "python" and opts.http_engine == "auto":
        logger.info(
            "HTTP is served by the Python engine: this build of tritonx has "
            "no C++ HTTP server (built with TRITONX_ENABLE_HTTP=OFF)"
        )
    if engine == "native":
        from tritonx.frontends.http_native import NativeHttpFrontend

        return NativeHttpFrontend(
            server.manager,
            server.registry,
            thread_count=opts.http_thread_count,
            use_ssl=opts.http_use_ssl,
            use_ssl_mutual=opts.http_use_ssl_mutual,
            server_cert=opts.http_server_cert,
            server_key=opts.http_server_key,
            root_cert=opts.http_root_cert,
            **common,
        )
    from tritonx.frontends.http import HttpFrontend
    from tritonx.frontends.http_access import server_ssl_context

    ssl_context = (
        server_ssl_context(
            opts.http_server_cert,
            opts.http_server_key,
            opts.http_root_cert,
            mutual=opts.http_use_ssl_mutual,
        )
        if https
        else None
    )
    return HttpFrontend(
        server.manager, server.registry, ssl_context=ssl_context, **common
    )


# -- cloud endpoints (--allow-sagemaker, --allow-vertex-ai) ----------------------------


def sagemaker_settings(opts: ServerOptions) -> SageMakerSettings | None:
    """The SageMaker endpoint's settings from the environment; None when it is off.
    The server reads them before any model loads, so that a bad one fails at once."""
    if not opts.allow_sagemaker:
        return None
    from tritonx.frontends.sagemaker import SageMakerSettings

    return SageMakerSettings.from_environment(os.environ)


def vertex_ai_routes(opts: ServerOptions) -> VertexAiRoutes | None:
    """The Vertex AI routes from the environment; None when the endpoint is off.
    Read before any model loads, so that a missing one fails at once."""
    if not opts.allow_vertex_ai:
        return None
    from tritonx.frontends.vertex_ai import VertexAiRoutes

    return VertexAiRoutes.from_environment(os.environ)


def sagemaker_frontend(
    server: Server, opts: ServerOptions, settings: SageMakerSettings
) -> Frontend:
    from tritonx.frontends.sagemaker import SAGEMAKER_ADDRESS, SageMakerFrontend

    frontend = SageMakerFrontend(
        server.manager,
        server.registry,
        settings,
        **_cloud_options(server, opts, SAGEMAKER_ADDRESS, opts.sagemaker_port),
    )
    return _native_cloud(
        server, opts, frontend, frontend.native_route(), opts.sagemaker_thread_count
    )


def vertex_ai_frontend(
    server: Server, opts: ServerOptions, routes: VertexAiRoutes, model: str
) -> Frontend:
    """The Vertex AI endpoint; ``model`` is the predict route's default model."""
    from tritonx.frontends.vertex_ai import VERTEX_AI_ADDRESS, VertexAiFrontend

    frontend = VertexAiFrontend(
        server.manager,
        server.registry,
        routes,
        model,
        server.metrics_text,
        **_cloud_options(server, opts, VERTEX_AI_ADDRESS, opts.vertex_ai_port),
    )
    return _native_cloud(
        server, opts, frontend, frontend.native_route(), opts.vertex_ai_thread_count
    )


def _cloud_options(
    server: Server, opts: ServerOptions, host: str, port: int
) -> dict[str, Any]:
    """The ``HttpFrontend`` options of a cloud endpoint (SageMaker, Vertex AI)."""
    return {
        "host": host,
        "port": port,
        "server_id": opts.server_id,
        "max_input_size": opts.http_max_input_size,
        "max_header_size": opts.http_max_header_size,
        "max_header_count": opts.http_max_header_count,
        "shared_memory": server.context.shared_memory,
        "log_settings": server.log_settings,
        "trace_settings": server.trace.settings if server.trace is not None else None,
    }


def _native_cloud(
    server: Server,
    opts: ServerOptions,
    frontend: Any,
    route: dict[str, Any],
    threads: int,
) -> Frontend:
    """A cloud endpoint's frontend on the C++ server, as --http-engine chooses
    for HTTP: its inference route in C++, the rest in ``frontend``."""
    if http_engine(opts) != "native":
        return frontend
    from tritonx.frontends.http_native import NativeCloudFrontend

    try:
        return NativeCloudFrontend(frontend, server.registry, route, threads)
    except TritonXError as error:  # e.g. a route RE2 cannot compile
        logger.warning("cloud endpoint served by the Python engine: %s", error)
        return frontend
