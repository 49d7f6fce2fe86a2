"""The HTTP/REST frontend served from C++ (``--http-engine=native``).

``tritonx._native.HttpServer`` (csrc/http, libevent's evhttp) owns the sockets and
serves ``POST /v2/models/{m}[/versions/{v}]/infer`` without Python: the body is
parsed, enqueued on the core and the response rendered in C++. Every other route
(health, metadata, config, statistics, repository, restricted-API answers ...) is
handed to :meth:`HttpFrontend._dispatch` of an unstarted Python ``HttpFrontend`` on
this event loop, so that logic lives in one place. The C++ control pool calls
:meth:`NativeHttpFrontend._handle` with the GIL; it only schedules the work here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tritonx import __version__
from tritonx.errors import InvalidArgumentError
from tritonx.frontends.http import DEFAULT_MAX_INPUT_SIZE, HttpFrontend
from tritonx.frontends.http_access import Restrictions
from tritonx.frontends.http_message import HttpMessage
from tritonx.frontends.http_protocol import (
    DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_HEADER_SIZE,
)
from tritonx.frontends.http_responses import Buffer, error_response

Reply = Callable[[int, list[tuple[str, str]], bytes], None]


class _NativeSlot:
    """``http_message.Slot`` for one request from C++: the complete response the
    Python handlers produce (status line, headers, body, all written by
    ``http_protocol.response``) is split up again and handed to ``reply``."""

    __slots__ = ("_reply", "data", "keep_alive", "on_done", "on_lost")

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self.keep_alive = True
        self.data: Sequence[Buffer] | None = None
        self.on_done: Callable[[], None] | None = None
        # Disconnects are seen in C++, which cancels native inference itself; the
        # requests that come through here are not cancelled.
        self.on_lost: Callable[[], None] | None = None

    def connected(self) -> bool:
        return True  # C++ watches the connection

    def done(self, data: Sequence[Buffer]) -> None:
        if self.data is not None:
            return
        self.data = data
        raw = b"".join(bytes(part) for part in data)
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.lower() != b"content-length":
                headers.append(
                    (name.decode("latin-1"), value.strip().decode("latin-1"))
                )
        self._reply(status, headers, body)
        if self.on_done is not None:
            self.on_done()


class NativeHttpFrontend:
    """KServe v2 HTTP/REST on the C++ server; same constructor options as
    ``HttpFrontend`` plus ``thread_count`` (``--http-thread-count``). HTTPS takes
    the PEM files themselves (``use_ssl``/``use_ssl_mutual`` with ``server_cert``,
    ``server_key``, ``root_cert``, as the --http-* flags): OpenSSL in C++ loads
    them, and bad ones raise InvalidArgumentError here, as ``server_ssl_context``
    does for the Python engine."""

    def __init__(
        self,
        manager: Any,
        registry: Any,
        *,
        host: str = "0.0.0.0",
        port: int = 8000,
        server_id: str = "triton",
        max_input_size: int = DEFAULT_MAX_INPUT_SIZE,
        version: str = __version__,
        extensions: Sequence[str] | None = None,
        reuse_port: bool = False,
        restricted_apis: Restrictions | None = None,
        header_forward_pattern: str | None = None,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
        thread_count: int = 2,
        control_threads: int = 4,
        use_ssl: bool = False,
        use_ssl_mutual: bool = False,
        server_cert: Path | None = None,
        server_key: Path | None = None,
        root_cert: Path | None = None,
        shared_memory: Any = None,
        log_settings: Any = None,
        trace_settings: Any = None,
    ) -> None:
        from tritonx import _native

        server_type = getattr(_native, "HttpServer", None)
        if server_type is None:
            raise InvalidArgumentError(
                "--http-engine=native: this build has no C++ HTTP server "
                "(built with TRITONX_ENABLE_HTTP=OFF)"
            )
        restricted = dict(restricted_apis or {})
        self._python = HttpFrontend(
            manager,
            registry,
            host=host,
            port=port,
            server_id=server_id,
            max_input_size=max_input_size,
            version=version,
            extensions=extensions,
            restricted_apis=restricted,
            header_forward_pattern=header_forward_pattern,
            max_header_size=max_header_size,
            max_header_count=max_header_count,
            shared_memory=shared_memory,
            log_settings=log_settings,
            trace_settings=trace_settings,
        )
        infer_header, infer_value = restricted.get("inference", ("", ""))
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = server_type(
            registry,
            self._handle,
            thread_count=max(1, thread_count),
            max_input_size=max_input_size,
            max_header_size=max_header_size,
            max_header_count=max_header_count,
            control_threads=control_threads,
            # Matched with RE2 in C++, as tritonserver does (the Python frontend
            # above has checked the pattern with Python's re already).
            header_forward_pattern=header_forward_pattern or "",
            infer_header=infer_header.lower(),
            infer_value=infer_value,
            # C++ answers "live" only while it is the constant answer; a server
            # that failed to initialise (a state it never leaves) is not live,
            # which the Python handler says.
            live_in_cpp="health" not in restricted and manager.server_live(),
            tls=use_ssl,
            tls_mutual=use_ssl_mutual,
            tls_server_cert=str(server_cert or ""),
            tls_server_key=str(server_key or ""),
            tls_root_cert=str(root_cert or ""),
            shared_memory=self._python._shm,
        )

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._loop = loop
        # The Python frontend is never started; its handlers need only the loop.
        self._python._loop = loop
        try:
            return int(self._server.start(self._host, self._port, self._reuse_port))
        except Exception as exc:
            raise OSError(str(exc)) from exc

    async def stop(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        # Blocking, and control calls in flight need this loop to finish.
        await loop.run_in_executor(None, self._server.stop, grace)
        self._python._offload.close()
        self._python._memory.close()

    # -- called from C++ ------------------------------------------------------------

    def _handle(
        self,
        method: str,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        reply: Reply,
    ) -> None:
        """On a C++ control-pool thread with the GIL: hand over to the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            reply(503, [("Content-Type", "application/json")], b'{"error": "stopping"}')
            return
        loop.call_soon_threadsafe(self._dispatch, method, url, headers, body, reply)

    def _dispatch(
        self,
        method: str,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        reply: Reply,
    ) -> None:
        message = HttpMessage()
        message.method = method.encode()
        message.url = url
        for name, value in headers:
            message.headers.setdefault(name.lower(), value)
        message.body = body
        slot = _NativeSlot(reply)
        try:
            self._python._dispatch(message, slot)  # type: ignore[arg-type]
        except Exception as exc:  # a handler bug must not lose the answer
            slot.done(error_response(500, str(exc) or type(exc).__name__))


class NativeCloudFrontend(NativeHttpFrontend):
    """A cloud endpoint (SageMaker, Vertex AI) on the C++ server. ``route`` (the
    endpoint's ``native_route()``: csrc/http/http_cloud.h's HttpCloudInfer as a
    dict) is its inference route, served in C++; every other request, and each
    inference request C++ leaves to it, goes to ``frontend`` (an unstarted
    SageMakerFrontend or VertexAiFrontend), whose handlers hold the endpoint's
    rules. Limits and shared memory are the frontend's."""

    def __init__(
        self, frontend: HttpFrontend, registry: Any, route: dict[str, Any], threads: int
    ) -> None:
        from tritonx import _native

        server_type = _native.HttpServer
        assert server_type is not None  # the caller chose the native engine
        self._python = frontend
        self._host = frontend._host
        self._port = frontend._port
        self._reuse_port = False
        self._loop = None
        self._server = server_type(
            registry,
            self._handle,
            thread_count=max(1, threads),
            max_input_size=frontend._max_input_size,
            max_header_size=frontend._max_header_size,
            max_header_count=frontend._max_header_count,
            # Health is the endpoint's own route (and KServe's is no route there).
            live_in_cpp=False,
            shared_memory=frontend._shm,
            cloud=route,
        )
