"""Triton's SageMaker endpoint (``--allow-sagemaker``, ``--sagemaker-port``).

A second HTTP listener (the Python engine's ``HttpFrontend``, whatever
``--http-engine`` says) whose paths are SageMaker's. Each one is translated onto the
KServe v2 handlers of the HTTP frontend, so the infer codec, validation, error
bodies and status mapping stay in one place; what differs is said here, following
tritonserver 2.51 (``src/sagemaker_server.cc``):

* ``GET /ping``: server readiness, or liveness when ``SAGEMAKER_TRITON_PING_MODE``
  is ``live`` (any other value means ready).
* ``POST /invocations``: inference on ``SAGEMAKER_TRITON_DEFAULT_MODEL_NAME`` (its
  latest version; unset: the model "unspecified_SAGEMAKER_TRITON_DEFAULT_MODEL_NAME",
  which is not found). The binary tensor extension is signalled by the content type
  ``application/vnd.sagemaker-triton.binary+json;json-header-size=<N>`` on the
  request and on the response (``Inference-Header-Content-Length`` is not read);
  request bodies are never decompressed and responses never compressed.
* ``/models[/<name>[/invoke]]``: the multi-model endpoint, served whatever
  ``SAGEMAKER_MULTI_MODEL`` says (Triton's container entrypoint reads that
  variable, tritonserver does not). ``POST /models`` with ``{"model_name", "url"}``
  registers the archive at ``url`` as a model repository
  (``ModelManager.register_repository``, explicit model control only) with its
  model directory mapped to the target model's name (the
  ``X-Amzn-SageMaker-Target-Model`` header, else ``model_name``) and loads it:
  200, 409 when the archive or the name is registered already, 507 when the load
  failed with an out-of-memory message, else 400 (then the archive is unregistered
  again). Urls must read ``/opt/ml/models/<hash>/model[/<subdir>]`` once made
  absolute and normalized (later tritonserver releases' check; 2.51 registers
  any directory); ``/dev/``, ``/proc/`` and ``/sys/`` get an empty 400. An
  archive with a config at its top is the model itself (``<hash>`` is the
  repository, ``model`` the directory); otherwise the archive is the repository and
  its model is its ensemble's directory, else its only (last listed) directory.
  The table (``model_name`` -> repository) answers list and get; invoke runs the
  target model like /invocations but answers every error 400 (507 for
  out-of-memory messages), JSON-typed when found before the model ran and
  ``text/plain`` when the model's response carried it; ``DELETE`` unloads the
  target model with the models loaded for it, then unregisters the archive.
* Any other path: 400 with an empty body.

Errors of ``/invocations`` found before the body is read (unknown model, decoupled
model, header size) are ``text/plain`` like tritonserver's; later ones are JSON with
Triton's HTTP status mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonx import _native
from tritonx.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    TritonXError,
    UnsupportedError,
)
from tritonx.frontends import http_infer
from tritonx.frontends.http_cloud import (
    CloudFrontend,
    binary_header_length,
    c_atoi,
)
from tritonx.frontends.http_cloud import error_body as _error_body
from tritonx.frontends.http_message import HttpMessage, SendTrace, Slot
from tritonx.frontends.http_responses import JSON, TEXT, Buffer, response, status_line
from tritonx.frontends.http_responses import dumps as _dumps

__all__ = ["SageMakerFrontend", "SageMakerSettings", "c_atoi", "header_length"]

# tritonserver binds the SageMaker listener to every address (no flag sets it).
SAGEMAKER_ADDRESS = "0.0.0.0"
DEFAULT_PORT = 8080

PING_MODE_ENV = "SAGEMAKER_TRITON_PING_MODE"
MODEL_NAME_ENV = "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME"
INFERENCE_TYPE_ENV = "SAGEMAKER_TRITON_INFERENCE_TYPE"
UNSPECIFIED_MODEL = "unspecified_SAGEMAKER_TRITON_DEFAULT_MODEL_NAME"
BINARY_MIME = "application/vnd.sagemaker-triton.binary+json;json-header-size="
_BINARY_MIME_BYTES = BINARY_MIME.encode()

_MODELS = re.compile(rb"/models(?:/)?([^/]+)?(/invoke)?")

_EMPTY_OK = response(200, b"", TEXT)
_EMPTY_BAD = response(400, b"", TEXT)
_EMPTY_NOT_FOUND = response(404, b"", TEXT)
_NOT_ALLOWED = response(405, b'{"error":"Method Not Allowed"}', TEXT)

_TARGET_MODEL = b"x-amzn-sagemaker-target-model"
# The archive urls tritonserver accepts: /opt/ml/models/<hash>/model[/<subdir>].
_MODEL_PATH = re.compile(r"(/opt/ml/models/[0-9A-Za-z._]+)/(model)/?([0-9A-Za-z._]+)?")
_ENSEMBLE_PLATFORM = re.compile(r'platform:\s*"ensemble"')
_SYSTEM_DIRS = ("/dev/", "/proc/", "/sys/")
# Error texts tritonserver reads as out of memory (507), from several frameworks.
_OUT_OF_MEMORY = (
    "CUDA out of memory",
    "CUDA_OUT_OF_MEMORY",
    "Out of memory",
    "Out Of Memory",
    "out of memory",
    "MemoryError",
    "OutOfMemory",
    "OOM",
    "Dst tensor is not initialized",
    "Src tensor is not initialized",
    "CNMEM_STATUS_OUT_OF_MEMORY",
    "CUDNN_STATUS_NOT_INITIALIZED",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUBLAS_STATUS_NOT_INITIALIZED",
    "Failed to allocate memory",
    "failed to allocate memory",
    "No space left on device",
)


@dataclass(frozen=True)
class SageMakerSettings:
    """What tritonserver reads from the environment when the endpoint starts."""

    ping_mode: str = "ready"
    model_name: str = UNSPECIFIED_MODEL

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> SageMakerSettings:
        """Raises UnsupportedError for an inference type other than "infer": the
        generate routes exist only in the native HTTP engine, which the SageMaker
        listener does not use. (tritonserver 2.51 does not read the variable;
        later releases route /invocations to generate with it.)"""
        kind = env.get(INFERENCE_TYPE_ENV, "infer")
        if kind != "infer":
            if kind in ("generate", "generate_stream"):
                raise UnsupportedError(
                    f"{INFERENCE_TYPE_ENV}={kind} is not supported by tritonx: its "
                    "SageMaker endpoint serves /invocations as 'infer' only"
                )
            raise InvalidArgumentError(
                f"invalid {INFERENCE_TYPE_ENV} '{kind}'; tritonx supports 'infer'"
            )
        return cls(
            ping_mode=env.get(PING_MODE_ENV, "ready"),
            model_name=env.get(MODEL_NAME_ENV, UNSPECIFIED_MODEL),
        )


def header_length(content_type: bytes | None, content_length: int) -> int:
    """Bytes of JSON at the start of a body (SageMaker's binary content type; see
    ``http_cloud.binary_header_length``)."""
    return binary_header_length(content_type, content_length, BINARY_MIME)


class SageMakerFrontend(CloudFrontend):
    """The SageMaker listener; ``settings`` from ``SageMakerSettings``. Takes the
    options of ``HttpFrontend`` that apply (no restricted APIs, header forwarding
    or TLS: tritonserver gives its SageMaker listener none)."""

    BINARY_MIME = BINARY_MIME

    def __init__(
        self,
        manager: Any,
        registry: Any,
        settings: SageMakerSettings,
        **options: Any,
    ) -> None:
        super().__init__(manager, registry, **options)
        self.settings = settings
        # Multi-model table: model name hash -> repository path (tritonserver's
        # sagemaker_models_list_), filled by POST /models.
        self.models: dict[str, str] = {}
        self._unloading: set[str] = set()  # hashes a DELETE is unloading

    # -- routing -------------------------------------------------------------------

    def native_route(self) -> dict[str, Any]:
        """The inference route the C++ server serves for this endpoint
        (http_native.NativeCloudFrontend); the rest stays here."""
        return {
            "path": "/invocations",
            "model": self.settings.model_name,
            "binary_mime": BINARY_MIME,
            "binary_reply_mime": True,
        }

    def _dispatch(self, message: HttpMessage, slot: Slot) -> None:
        path = message.url.split(b"?", 1)[0]
        if path == b"/ping":
            self._ping(message, slot)
        elif path == b"/invocations":
            self._invoke(message, slot, self.settings.model_name)
        else:
            match = _MODELS.fullmatch(path)
            if match is None:
                slot.done(_EMPTY_BAD)
            else:
                name = (match.group(1) or b"").decode("utf-8", "replace")
                self._multi_model(message, slot, name, match.group(2) is not None)

    def _ping(self, message: HttpMessage, slot: Slot) -> None:
        if message.method != b"GET":
            slot.done(_NOT_ALLOWED)
        elif self.settings.ping_mode == "live":
            # Triton's liveness: answering, unless it failed to initialise.
            slot.done(_EMPTY_OK if self._manager.server_live() else _EMPTY_BAD)
        else:
            self._answer_readiness(
                slot,
                lambda: _EMPTY_OK if self._manager.server_ready() else _EMPTY_BAD,
                "",
            )

    def _binary_reply(
        self, header: bytes, binaries: list[memoryview], size: int
    ) -> list[Buffer]:
        content_type = _BINARY_MIME_BYTES + b"%d" % len(header)
        return [
            b"%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (status_line(200), content_type, size, header),
            *binaries,
        ]

    # -- multi-model endpoint ----------------------------------------------------------

    def _multi_model(
        self, message: HttpMessage, slot: Slot, name: str, invoke: bool
    ) -> None:
        method = message.method
        if method == b"GET":
            if name:
                slot.done(self._model_entry(name))
            else:
                # Listing asks each model's readiness: is_ready() may take seconds.
                blocking = any(
                    self._manager.readiness_may_block(n, "1") for n in self.models
                )
                self._answer_readiness(slot, self._model_list, "", blocking=blocking)
        elif method == b"POST" and invoke:
            if name not in self.models:
                slot.done(_EMPTY_NOT_FOUND)
            else:
                self._invoke_loaded(message, slot, _target_model(message, name))
        elif method == b"POST":
            self._spawn(self._load_from_url(message, slot))
        elif method == b"DELETE":
            if name not in self.models or name in self._unloading:
                slot.done(_EMPTY_NOT_FOUND)
            else:
                self._spawn(self._unload_loaded(message, slot, name))
        else:
            slot.done(_EMPTY_BAD)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _model_list(self) -> list[Buffer]:
        rows: list[dict[str, str]] = []
        for name, url in self.models.items():
            try:
                ready = self._manager.model_ready(name, "1")
            except TritonXError:
                ready = False
            # tritonserver lists a model that is not ready as an empty object.
            rows.append({"modelName": name, "modelUrl": url} if ready else {})
        return response(200, _dumps({"models": rows}), TEXT)

    def _model_entry(self, name: str) -> list[Buffer]:
        url = self.models.get(name)
        if url is None:
            return _EMPTY_NOT_FOUND
        return response(200, _dumps({"modelName": name, "modelUrl": url}), TEXT)

    async def _load_from_url(self, message: HttpMessage, slot: Slot) -> None:
        """``POST /models`` with ``{"model_name": ..., "url": ...}``: register the
        archive's directory as a repository, its model (or its ensemble) mapped to
        the target model's name, and load it; see the module docstring."""
        manager = self._manager
        try:
            name_hash, url = _load_request(message.body)
            target = _target_model(message, name_hash)
            absolute = lexically_absolute(url)
            if absolute.startswith(_SYSTEM_DIRS):
                slot.done(_EMPTY_BAD)
                return
            repository, subdir = await asyncio.get_running_loop().run_in_executor(
                None, archive_layout, url, absolute
            )
            manager.register_repository(repository, {subdir: target})
        except AlreadyExistsError as exc:
            slot.done(response(409, _dumps({"error": exc.message}), TEXT))
            return
        except Exception as exc:
            _, body = _error_body(exc)
            slot.done(response(400, body, TEXT))
            return
        try:
            await manager.load(target)
        except Exception as exc:
            status, body = _error_body(exc)
            if status != 409:
                status = _failure_status(exc)
            slot.done(response(status, body, TEXT))
            with contextlib.suppress(TritonXError):
                manager.unregister_repository(repository)
            return
        self.models.setdefault(name_hash, repository)
        slot.done(_EMPTY_OK)

    async def _unload_loaded(
        self, message: HttpMessage, slot: Slot, name_hash: str
    ) -> None:
        """``DELETE /models/<name>``: unload the target model with the models
        loaded for it (an ensemble's), then unregister its repository."""
        self._unloading.add(name_hash)
        try:
            reply = await self._unload_and_unregister(message, name_hash)
        finally:
            self._unloading.discard(name_hash)
        slot.done(reply)

    async def _unload_and_unregister(
        self, message: HttpMessage, name_hash: str
    ) -> list[Buffer]:
        try:
            target = _target_model(message, name_hash)
            await self._manager.unload(target, unload_dependents=True)
        except Exception as exc:  # the model stays in the table
            return response(400, _error_body(exc)[1], TEXT)
        try:
            self._manager.unregister_repository(self.models[name_hash])
        except Exception as exc:
            return response(400, _error_body(exc)[1], TEXT)
        finally:
            self.models.pop(name_hash, None)
        return _EMPTY_OK

    def _invoke_loaded(self, message: HttpMessage, slot: Slot, model: str) -> None:
        """``POST /models/<name>/invoke``: as /invocations, but every error is 400
        (507 for an out-of-memory message), JSON-typed when found before the
        request ran and ``text/plain`` when the model's response carried it."""
        try:
            _native.check_transaction_policy(self._registry.find(model, ""), "http")
            size = header_length(
                message.headers.get(b"content-type"), len(message.body)
            )
        except Exception as exc:
            slot.done(_failure_reply(exc, JSON))
            return
        self._infer_framed(message, _MultiModelSlot(slot), model, "", size)

    def _infer_done(
        self,
        result: Any,
        slot: Slot,
        parsed: http_infer.ParsedInfer,
        accept: bytes | None,
    ) -> None:
        if isinstance(result, BaseException) and isinstance(slot, _MultiModelSlot):
            slot.failed_in_model(result)
        else:
            super()._infer_done(result, slot, parsed, accept)


def _target_model(message: HttpMessage, name_hash: str) -> str:
    """The model SageMaker means: its X-Amzn-SageMaker-Target-Model header, else
    the name in the request."""
    target = message.headers.get(_TARGET_MODEL)
    return name_hash if target is None else target.decode("utf-8", "replace")


def _load_request(body: bytes | bytearray) -> tuple[str, str]:
    """(model_name, url) of a load request; absent members read as ""."""
    fields = {"model_name": "", "url": ""}
    if body:
        request = http_infer.load_json(body)
        if isinstance(request, dict):
            for key in fields:
                if key in request:
                    if not isinstance(request[key], str):
                        raise InvalidArgumentError(
                            "attempt to access JSON non-string as string"
                        )
                    fields[key] = request[key]
    return fields["model_name"], fields["url"]


def lexically_absolute(url: str) -> str:
    """``url`` made absolute against the working directory and without "." or
    ".." components, a trailing separator kept (as C++'s
    ``std::filesystem::absolute(path.lexically_normal())`` writes it)."""
    if not url:
        return url
    joined = url if url.startswith("/") else os.path.join(os.getcwd(), url)
    normal = posixpath.normpath(joined)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    last = url.rstrip("/").rsplit("/", 1)[-1] if url.rstrip("/") else ""
    if normal != "/" and (url.endswith("/") or last in (".", "..")):
        normal += "/"
    return normal


def archive_layout(url: str, absolute: str) -> tuple[str, str]:
    """(repository, sub-directory) to register for a model archive at ``url``.

    A config.pbtxt at the top makes the archive directory itself the model:
    ``/opt/ml/models/<hash>`` is the repository and "model" the sub-directory.
    Otherwise the archive is the repository and its model is its ensemble's
    directory (the last one listed whose config says ``platform: "ensemble"``), else
    its last directory, in the directory's own listing order, as tritonserver
    reads it. Raises InvalidArgumentError for a url of another form."""
    subdir = ""
    ensemble = ""
    try:
        entries = list(os.scandir(absolute))
    except OSError:
        entries = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        subdir = entry.name
        try:
            text = Path(entry.path, "config.pbtxt").read_text(errors="replace")
        except OSError:
            continue
        if _ENSEMBLE_PLATFORM.search(text):
            ensemble = subdir
    match = _MODEL_PATH.fullmatch(absolute)
    if match is None:
        raise InvalidArgumentError(
            f"Invalid \"url\" '{url}': expected a path of the form "
            "/opt/ml/models/<hash>/model[/<subdir>]"
        )
    if os.path.exists(absolute + "/config.pbtxt"):
        return match.group(1), match.group(2)
    return absolute, ensemble or subdir


def is_out_of_memory(message: str) -> bool:
    """Whether an error reads as running out of memory (tritonserver's list of
    framework messages): the SageMaker endpoint answers those with 507."""
    return any(marker in message for marker in _OUT_OF_MEMORY)


def _failure_status(exc: BaseException) -> int:
    message = exc.message if isinstance(exc, TritonXError) else str(exc)
    return 507 if is_out_of_memory(message) else 400


def _failure_reply(exc: BaseException, content_type: bytes) -> list[Buffer]:
    _, body = _error_body(exc)
    return response(_failure_status(exc), body, content_type)


class _MultiModelSlot(Slot):
    """The slot of a multi-model invoke, handed to the HTTP frontend's infer path:
    its error replies become SageMaker's (400, or 507 for out-of-memory messages);
    everything else goes to the connection's own slot."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Slot) -> None:  # no Slot state of its own
        self._inner = inner

    @property
    def on_lost(self) -> Callable[[], None] | None:
        return self._inner.on_lost

    @on_lost.setter
    def on_lost(self, value: Callable[[], None] | None) -> None:
        self._inner.on_lost = value

    @property
    def on_done(self) -> Callable[[], None] | None:
        return self._inner.on_done

    @on_done.setter
    def on_done(self, value: Callable[[], None] | None) -> None:
        self._inner.on_done = value

    @property
    def trace(self) -> SendTrace | None:
        return self._inner.trace

    @trace.setter
    def trace(self, value: SendTrace | None) -> None:
        self._inner.trace = value

    def connected(self) -> bool:
        return self._inner.connected()

    def done(self, data: Sequence[Buffer]) -> None:
        head = bytes(data[0]) if data else b""
        if head[9:12] == b"200":
            self._inner.done(data)
            return
        _, _, rest = head.partition(b"\r\n\r\n")
        body = rest + b"".join(bytes(part) for part in data[1:])
        try:
            message = str(json.loads(body).get("error", ""))
        except (ValueError, AttributeError):
            message = body.decode("utf-8", "replace")
        status = 507 if is_out_of_memory(message) else 400
        self._inner.done(response(status, body, JSON))

    def failed_in_model(self, error: BaseException) -> None:
        self._inner.done(_failure_reply(error, TEXT))
