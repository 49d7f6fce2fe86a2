"""The HTTP/REST frontend: KServe v2 plus Triton's extensions, on asyncio + httptools.

``HttpFrontend`` binds the listening socket and routes each request parsed by
``http_protocol.HttpConnection``. Inference never awaits a coroutine: the handler
parses the body, submits to the core with a future and writes the response from the
future's done-callback, so the per-request Python work is a JSON parse, one core
call and one bytes join. The control-plane routes (load/unload) run as tasks.
JSON bodies and JSON output data beyond ``http_offload.OFFLOAD_BYTES`` are parsed and
rendered off the loop (``http_offload``), so one large request cannot stall it.

Access control (restricted API groups, header forwarding, TLS) lives in
``http_access``; request-head limits in ``http_protocol``; the model metadata, config,
statistics and repository routes in ``http_models``, the shared memory, logging and
trace extensions in ``http_extensions``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import re
import ssl
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from tritonx import __version__, _native
from tritonx.errors import InvalidArgumentError, TritonXError, UnavailableError
from tritonx.frontends import (
    http_extensions,
    http_generate,
    http_infer,
    http_models,
)
from tritonx.frontends.base import server_extensions
from tritonx.frontends.http_access import (
    AccessRules,
    Restrictions,
    compile_forward_pattern,
    forwarded_headers,
)
from tritonx.frontends.http_message import HttpMessage, Slot
from tritonx.frontends.http_offload import OFFLOAD_BYTES, JsonOffload, MemoryReturn
from tritonx.frontends.http_protocol import (
    DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_HEADER_SIZE,
    HttpConnection,
    kserve_json_size,
)
from tritonx.frontends.http_responses import (
    JSON,
    OCTETS,
    TEXT,
    Buffer,
    dumps,
    exception_response,
    response,
    status_line,
)
from tritonx.frontends.http_routes import ROUTE_METHODS, Route, log_request, resolve

DEFAULT_MAX_INPUT_SIZE = 64 * 1024 * 1024

_EMPTY_OK = response(200, b"", TEXT)
_EMPTY_BAD = response(400, b"", TEXT)
_NOT_FOUND = response(404, b'{"error":"Not Found"}', TEXT)
_NOT_ALLOWED = response(405, b'{"error":"Method Not Allowed"}', JSON)
# Triton's health, model readiness and infer handlers refuse a method before they
# set a content type: libevhtp's text/plain.
_NOT_ALLOWED_TEXT = response(405, b'{"error":"Method Not Allowed"}', TEXT)
_TEXT_REFUSALS = frozenset(("live", "ready", "model_ready", "infer"))
_NOT_READY = response(400, b'{"error":"Model version not ready"}', TEXT)


def _compression(accept: bytes) -> str:
    """Triton's pick from Accept-Encoding (the core's rule, shared with the native
    engine): "identity", "gzip" or "deflate"."""
    return _native.http_messages.accept_encoding(accept.decode("latin-1"))


class HttpFrontend:
    """KServe v2 HTTP/REST endpoint over a ``ModelManager`` and a ``ModelRegistry``."""

    # Request bodies with Content-Encoding gzip/deflate are inflated before routing.
    DECOMPRESS_REQUESTS = True
    # Threads for readiness answers that run a model's is_ready() (shared by the
    # frontends of the process; made on first use).
    _readiness_pool: concurrent.futures.ThreadPoolExecutor | None = None

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
        ssl_context: ssl.SSLContext | None = None,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
        shared_memory: Any = None,
        log_settings: Any = None,
        trace_settings: Any = None,
    ) -> None:
        """``shared_memory``: the server context's ``SharedMemoryRegistry``;
        ``log_settings`` / ``trace_settings``: the logging and trace extensions'
        stores, shared with gRPC."""
        from tritonx.frontends.grpc import (
            default_log_settings,
            standalone_trace_settings,
        )
        from tritonx.frontends.shared_memory import (
            SharedMemoryControl,
            default_registry,
        )

        self._shm = shared_memory if shared_memory is not None else default_registry()
        self._shm_control = SharedMemoryControl(self._shm)
        self.log_settings = log_settings or default_log_settings()
        self.trace_settings = trace_settings or standalone_trace_settings(manager)
        self._manager = manager
        self._registry = registry
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._max_input_size = max_input_size
        self._max_header_size = max_header_size
        self._max_header_count = max_header_count
        self._access = AccessRules(restricted_apis or {})
        self._forward: re.Pattern[str] | None = (
            compile_forward_pattern(header_forward_pattern)
            if header_forward_pattern
            else None
        )
        self._ssl_context = ssl_context
        self._offload = JsonOffload()
        self._memory = MemoryReturn()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[HttpConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        if extensions is None:
            extensions = server_extensions()
        info = {"name": server_id, "version": version, "extensions": list(extensions)}
        self._metadata = response(200, dumps(info))
        handlers: dict[str, Callable[[HttpMessage, Slot, Route], None]] = {
            "server_metadata": lambda m, s, r: s.done(self._metadata),
            "live": lambda m, s, r: s.done(
                _EMPTY_OK if self._manager.server_live() else _EMPTY_BAD
            ),
            "ready": self._server_ready,
            "all_stats": self._stats,
            "model_metadata": lambda m, s, r: s.done(
                http_models.metadata_reply(self._manager, r)
            ),
            "infer": self._infer,
            "generate": http_generate.GenerateRoutes(
                registry, self._forward, self._offload, lambda: self._loop
            ).handle,
            "model_ready": self._model_ready,
            "model_config": lambda m, s, r: s.done(
                http_models.config_reply(self._manager, r)
            ),
            "model_stats": self._stats,
            "repo_index": lambda m, s, r: s.done(
                http_models.index_reply(self._manager, m)
            ),
            "repo_load": self._repo_control,
            "repo_unload": self._repo_control,
            "shared_memory": lambda m, s, r: s.done(
                http_extensions.shared_memory_reply(self._shm_control, m, r)
            ),
            "logging": self._logging,
            "trace": lambda m, s, r: s.done(
                http_extensions.trace_reply(self.trace_settings, m, r)
            ),
        }
        self._handlers = handlers

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._loop = loop
        keep_raw = self._forward is not None
        try:
            self._server = await self._listen(loop, keep_raw)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            # tritonserver's wording, as the native engine and gRPC give it.
            address = f"{self._host}:{self._port}"
            raise OSError(error.errno, f"Socket '{address}' already in use ") from error
        return int(self._server.sockets[0].getsockname()[1])

    def _json_size(self, headers: dict[bytes, bytes], body_size: int) -> int | None:
        """Where a body's JSON ends, for ``--http-max-input-size`` (http_protocol)."""
        return kserve_json_size(headers, body_size)

    async def _listen(
        self, loop: asyncio.AbstractEventLoop, keep_raw: bool
    ) -> asyncio.Server:
        return await loop.create_server(
            lambda: HttpConnection(
                self._dispatch,
                self._max_input_size,
                self._connections,
                max_header_size=self._max_header_size,
                max_header_count=self._max_header_count,
                keep_raw_headers=keep_raw,
                decompress=self.DECOMPRESS_REQUESTS,
                json_size=self._json_size,
            ),
            self._host,
            self._port,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
            backlog=1024,
            ssl=self._ssl_context,
        )

    async def stop(self, grace: float) -> None:
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections):
            conn.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(grace, 0.0)
        while any(c.busy() for c in self._connections) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self._connections):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        self._offload.close()
        self._memory.close()
        self._server = None

    # -- routing ---------------------------------------------------------------------

    def _dispatch(self, message: HttpMessage, slot: Slot) -> None:
        if len(message.body) > OFFLOAD_BYTES:
            slot.on_done = self._memory.note
        route = resolve(message.url)
        if self._access:
            refusal = self._access.refusal(route.kind, message.headers)
            if refusal is not None:
                slot.done(refusal)
                return
        method = ROUTE_METHODS.get(route.kind)
        if method is None:
            log_request(message.method, message.url, not_found=True)
            slot.done(_NOT_FOUND)
        elif method and message.method != method:
            text = route.kind in _TEXT_REFUSALS
            slot.done(_NOT_ALLOWED_TEXT if text else _NOT_ALLOWED)
        else:
            self._handlers[route.kind](message, slot, route)

    # -- health, metadata, config, statistics -------------------------------------------

    def _server_ready(self, message: HttpMessage, slot: Slot, route: Route) -> None:
        def answer() -> Sequence[Buffer]:
            return _EMPTY_OK if self._manager.server_ready() else _EMPTY_BAD

        self._answer_readiness(slot, answer, "")

    def _model_ready(self, message: HttpMessage, slot: Slot, route: Route) -> None:
        def answer() -> Sequence[Buffer]:
            try:
                ready = self._manager.model_ready(route.model, route.version)
            except (InvalidArgumentError, UnavailableError) as exc:
                # A version string past int64; a server that failed to initialise.
                return exception_response(exc)
            except TritonXError:
                ready = False  # Triton answers unknown models like not-ready ones
            return _EMPTY_OK if ready else _NOT_READY

        self._answer_readiness(slot, answer, route.model, route.version)

    def _answer_readiness(
        self,
        slot: Slot,
        answer: Callable[[], Sequence[Buffer]],
        model: str,
        version: str = "",
        *,
        blocking: bool | None = None,
    ) -> None:
        """Inline, unless a model's is_ready() may run (up to five seconds): then on
        a readiness thread, so that the event loop keeps serving meanwhile.
        ``blocking`` None: decided for ``model`` ("" the server)."""
        if blocking is None:
            try:
                blocking = bool(self._manager.readiness_may_block(model, version))
            except TritonXError:
                blocking = False
        if not blocking:
            slot.done(answer())
            return
        if HttpFrontend._readiness_pool is None:
            HttpFrontend._readiness_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="tritonx-ready"
            )
        future = asyncio.get_running_loop().run_in_executor(
            HttpFrontend._readiness_pool, answer
        )
        future.add_done_callback(lambda done: slot.done(done.result()))

    def _stats(self, message: HttpMessage, slot: Slot, route: Route) -> None:
        slot.done(http_models.stats_reply(self._manager, route))

    # -- repository -----------------------------------------------------------------------

    def _repo_control(self, message: HttpMessage, slot: Slot, route: Route) -> None:
        try:
            action = http_models.repository_action(self._manager, message, route)
        except Exception as exc:
            slot.done(exception_response(exc))
            return
        task = asyncio.ensure_future(http_models.finish_control(action, slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _logging(self, message: HttpMessage, slot: Slot, route: Route) -> None:
        # Off the loop: a level change returns once the stub processes have it,
        # which a stuck stub delays up to its timeout.
        async def reply() -> None:
            store = self.log_settings
            slot.done(
                await asyncio.to_thread(http_extensions.logging_reply, store, message)
            )

        task = asyncio.ensure_future(reply())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- inference -------------------------------------------------------------------------

    def _infer(self, message: HttpMessage, slot: Slot, route: Route) -> None:
        name = route.model
        body = message.body
        try:
            model = self._registry.find(name, route.version)
            # While some trace setting is on: HTTP_RECV_START (0: not taken).
            received = time.monotonic_ns() if model.tracing else 0
            _native.check_transaction_policy(model, "http")
            hlen = http_infer.header_length(
                message.headers.get(b"inference-header-content-length"), len(body)
            )
        except Exception as exc:
            # Triton finds these before its handler sets a content type.
            slot.done(exception_response(exc, TEXT))
            return
        try:
            if hlen == 0 or (hlen is None and not body):
                # The body is the raw bytes of the model's only input (without the
                # header, Triton takes the body's length for the JSON's: an empty
                # body is a raw one too).
                parsed = http_infer.ParsedInfer()
                parsed.raw = (model, body)
                parsed.default_binary = True
            elif (len(body) if hlen is None else hlen) > OFFLOAD_BYTES:
                # Only the JSON part is decoded there; binary inputs stay views.
                header = body if hlen is None else memoryview(body)[:hlen]
                parsing = self._offload.run_decode(
                    http_infer.parse_header, header, hlen, len(body), name
                )
                parsing.add_done_callback(
                    lambda f: self._infer_parsed(
                        f, message, slot, model, name, received
                    )
                )
                return
            else:
                parsed = http_infer.parse_infer(body, hlen, name)
        except Exception as exc:
            slot.done(exception_response(exc))
            return
        self._submit(model, name, parsed, message, slot, received)

    def _infer_parsed(
        self,
        parsing: asyncio.Future[http_infer.ParsedInfer],
        message: HttpMessage,
        slot: Slot,
        model: Any,
        name: str,
        received: int,
    ) -> None:
        if not slot.connected():  # gone while a helper parsed its body
            return
        try:
            parsed = self._offload.result(parsing)
            http_infer.attach_binary(parsed, message.body)
        except Exception as exc:
            slot.done(exception_response(exc))
            return
        self._submit(model, name, parsed, message, slot, received)

    def _submit(
        self,
        model: Any,
        name: str,
        parsed: http_infer.ParsedInfer,
        message: HttpMessage,
        slot: Slot,
        received: int = 0,
    ) -> None:
        """``received``: HTTP_RECV_START while tracing is on, else 0."""
        try:
            params: dict[str, Any] | None = parsed.parameters
            if self._forward is not None and message.raw_headers:
                forwarded = forwarded_headers(self._forward, message.raw_headers)
                if forwarded:
                    # After the JSON ones, as Triton adds them: a header wins.
                    params = {**params, **forwarded} if params else forwarded
            request = parsed.core_request(params, self._shm, name)
            if received:
                slot.trace = http_infer.trace_received(
                    request, received, message.headers
                )
            accept = message.headers.get(b"accept-encoding")
            # Non-decoupled (checked above): exactly one response, final, answered
            # on this loop.
            model.submit(
                request,
                lambda value, final: self._infer_done(value, slot, parsed, accept),
                self._loop,
            )
        except Exception as exc:
            slot.done(exception_response(exc))
            return
        # A client that disconnects cancels its request: dropped if still queued,
        # flagged (request.is_cancelled()) if executing; counted as CANCELED.
        slot.on_lost = lambda: model.cancel(request)

    def _infer_done(
        self,
        result: Any,
        slot: Slot,
        parsed: http_infer.ParsedInfer,
        accept: bytes | None,
    ) -> None:
        if isinstance(result, BaseException):
            slot.done(exception_response(result))
            return
        try:
            outputs = result.outputs
            # Cheap test first: most responses are far below the threshold.
            if sum(out.byte_size for out in outputs) > OFFLOAD_BYTES:
                items = http_infer.json_items(
                    outputs,
                    parsed.binary_outputs,
                    parsed.default_binary,
                    parsed.shm_outputs,
                )
                if sum(raw.nbytes for _, _, raw in items) > OFFLOAD_BYTES:
                    # Rendering millions of numbers as text holds the GIL for
                    # seconds; the helper gets a copy of the wire bytes.
                    jobs = [(dtype, shape, bytes(raw)) for dtype, shape, raw in items]
                    rendering = self._offload.run(http_infer.render_json_data, jobs)
                    rendering.add_done_callback(
                        lambda f: self._respond(slot, result, parsed, accept, f)
                    )
                    return
        except BaseException as exc:
            slot.done(exception_response(exc))
            return
        self._respond(slot, result, parsed, accept, None)

    def _respond(
        self,
        slot: Slot,
        result: Any,
        parsed: http_infer.ParsedInfer,
        accept: bytes | None,
        rendering: asyncio.Future[list[bytes]] | None,
    ) -> None:
        try:
            json_data = None if rendering is None else self._offload.result(rendering)
            header, binaries = http_infer.encode_response(
                result.model_name,
                result.model_version,
                result.id,
                result.parameters,
                result.outputs,
                parsed.binary_outputs,
                parsed.default_binary,
                json_data,
                parsed.shm_outputs,
            )
        except BaseException as exc:
            slot.done(exception_response(exc))
            return
        size = len(header) + sum(b.nbytes for b in binaries)
        if size > OFFLOAD_BYTES:
            slot.on_done = self._memory.note
        encoding = "identity" if accept is None else _compression(accept)
        if encoding != "identity":
            if size > OFFLOAD_BYTES:
                # zlib releases the GIL while it compresses: a thread keeps the
                # loop free for the duration.
                assert self._loop is not None
                packing = self._loop.run_in_executor(
                    None, _compressed, header, binaries, encoding
                )
                packing.add_done_callback(lambda f: _send_compressed(f, slot))
            else:
                slot.done(_compressed(header, binaries, encoding))
        elif binaries:
            slot.done(self._binary_reply(header, binaries, size))
        else:
            slot.done(response(200, header))

    def _binary_reply(
        self, header: bytes, binaries: list[memoryview], size: int
    ) -> list[Buffer]:
        """A 200 with binary outputs: the JSON header, then the tensors' bytes
        (Triton's binary tensor extension). The SageMaker endpoint frames it its
        own way."""
        head = (
            b"%sContent-Type: %s\r\nInference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
            % (
                status_line(200),
                OCTETS,
                len(header),
                size,
            )
        )
        return [head + header, *binaries]


def _future_error(future: asyncio.Future[Any]) -> BaseException | None:
    # Taken without re-raising: raising would chain this frame (and what it
    # references) onto the exception the future keeps, a cycle only a full GC frees.
    if future.cancelled():
        return UnavailableError("the request was cancelled")
    return future.exception()


def _send_compressed(packing: asyncio.Future[list[Buffer]], slot: Slot) -> None:
    error = _future_error(packing)
    slot.done(exception_response(error) if error is not None else packing.result())


def _compressed(
    header: bytes, binaries: list[memoryview], encoding: str
) -> list[Buffer]:
    body = header if not binaries else b"".join([header, *binaries])
    if encoding == "gzip":
        packer = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        data = packer.compress(body) + packer.flush()
    else:
        data = zlib.compress(body)
    extra = b"Content-Encoding: " + encoding.encode() + b"\r\n"
    if binaries:
        extra += b"Inference-Header-Content-Length: %d\r\n" % len(header)
        return response(200, data, OCTETS, extra)
    return response(200, data, JSON, extra)
