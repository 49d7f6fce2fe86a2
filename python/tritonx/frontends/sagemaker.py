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
  variable, tritonserver does not). Its table holds the models loaded through
  ``POST /models``; tritonx cannot load a model from a URL yet (see
  ``docs/architecture.md``), so the table stays empty and list, get, invoke and
  unload answer as tritonserver does for models it does not have.
* Any other path: 400 with an empty body.

Errors of ``/invocations`` found before the body is read (unknown model, decoupled
model, header size) are ``text/plain`` like tritonserver's; later ones are JSON with
Triton's HTTP status mapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tritonx.errors import InvalidArgumentError, TritonXError, UnsupportedError
from tritonx.frontends import http_infer
from tritonx.frontends.http_cloud import (
    CloudFrontend,
    binary_header_length,
    c_atoi,
)
from tritonx.frontends.http_cloud import dumps as _dumps
from tritonx.frontends.http_cloud import error_body as _error_body
from tritonx.frontends.http_protocol import (
    TEXT,
    Buffer,
    HttpMessage,
    Slot,
    response,
    status_line,
)

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

LOAD_UNSUPPORTED = (
    "loading a model from a URL through the SageMaker endpoint is not supported by "
    "tritonx: its model manager cannot register a model repository at run time"
)
_NOT_EXPLICIT = (
    "repository registration is not allowed if model control mode is not EXPLICIT"
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
        # sagemaker_models_list_); filled by POST /models once tritonx can load
        # from a URL.
        self.models: dict[str, str] = {}

    # -- routing -------------------------------------------------------------------

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
            slot.done(_EMPTY_OK)  # the process answers: it is live
        else:
            slot.done(_EMPTY_OK if self._manager.server_ready() else _EMPTY_BAD)

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
            slot.done(self._model_list() if not name else self._model_entry(name))
        elif method == b"POST" and not invoke:
            slot.done(self._load_from_url(message))
        elif method in (b"POST", b"DELETE"):
            # Invoke and unload take models loaded through POST /models only, and
            # tritonx loads none yet (see _load_from_url): tritonserver's answer to
            # a name not in its table.
            slot.done(_EMPTY_NOT_FOUND)
        else:
            slot.done(_EMPTY_BAD)

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

    def _load_from_url(self, message: HttpMessage) -> list[Buffer]:
        """``POST /models`` with ``{"model_name": ..., "url": ...}``: the body is
        checked as tritonserver reads it, then refused (400, its answer to a
        repository it cannot register)."""
        try:
            if message.body:
                request = http_infer.load_json(message.body)
                if isinstance(request, dict):
                    for key in ("model_name", "url"):
                        if key in request and not isinstance(request[key], str):
                            raise InvalidArgumentError(
                                "attempt to access JSON non-string as string"
                            )
            if self._manager.options.control_mode != "explicit":
                raise InvalidArgumentError(_NOT_EXPLICIT)
            raise InvalidArgumentError(LOAD_UNSUPPORTED)
        except Exception as exc:
            _, body = _error_body(exc)
            return response(400, body, TEXT)
