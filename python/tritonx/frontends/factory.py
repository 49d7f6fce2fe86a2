"""The KServe frontends of a server, built from a ``ServerOptions``: the gRPC server
(C++) and the HTTP server of ``--http-engine``. Shared by the server's own start
(the command line's endpoints) and ``tritonx.api.frontend`` (endpoints started on a
running in-process server), so that both configure them the same way."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonx.errors import InvalidArgumentError

if TYPE_CHECKING:
    from tritonx.server import Frontend, Server, ServerOptions

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
