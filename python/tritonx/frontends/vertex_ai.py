"""Triton's Vertex AI endpoint (``--allow-vertex-ai``, ``--vertex-ai-port``).

A second HTTP listener (the Python engine's ``HttpFrontend``, whatever
``--http-engine`` says) with two routes, both regular expressions taken from the
environment when the endpoint starts and matched against the whole path (query
string left out), following tritonserver 2.51 (``src/vertex_ai_server.cc``):

* ``AIP_HEALTH_ROUTE``: server readiness (GET only).
* ``AIP_PREDICT_ROUTE``: inference on the default model (``--vertex-ai-default-
  model``, else the only model loaded), its latest version. The binary tensor
  extension is signalled by the content type
  ``application/vnd.vertex-ai-triton.binary+json;json-header-size=<N>`` on the
  request (``Inference-Header-Content-Length`` is not read); a binary response is
  framed the KServe way (``application/octet-stream`` and
  ``Inference-Header-Content-Length``). Bodies are never decompressed nor
  responses compressed.
* The predict route with the header ``X-Vertex-Ai-Triton-Redirect: <path>`` and
  method POST runs the KServe v2 handler of ``/<path>`` instead: server metadata
  and health, model metadata, readiness, config, statistics and inference,
  repository index, load and unload, shared memory status, register and
  unregister, and ``metrics`` (served even with the metrics endpoint off). Other paths (generate, trace, logging) answer 400.
* Any other path: 400 with an empty body.

The routes are checked before any model loads; the default model once the models
are loaded (``default_model``). Errors found before the body is read are
``text/plain`` like tritonserver's, later ones JSON with Triton's status mapping.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tritonx.errors import InvalidArgumentError
from tritonx.frontends.http_cloud import CloudFrontend, rebuilt
from tritonx.frontends.http_message import HttpMessage, Slot
from tritonx.frontends.http_responses import TEXT, response
from tritonx.frontends.http_routes import resolve

logger = logging.getLogger("tritonx.frontends.vertex_ai")

# tritonserver binds the Vertex AI listener to every address (no flag sets it).
VERTEX_AI_ADDRESS = "0.0.0.0"
DEFAULT_PORT = 8080

MODE_ENV = "AIP_MODE"  # "PREDICTION": Vertex AI on, HTTP and gRPC off by default
PORT_ENV = "AIP_HTTP_PORT"  # default of --vertex-ai-port
HEALTH_ROUTE_ENV = "AIP_HEALTH_ROUTE"
PREDICT_ROUTE_ENV = "AIP_PREDICT_ROUTE"
STORAGE_URI_ENV = "AIP_STORAGE_URI"  # default of --model-repository
BINARY_MIME = "application/vnd.vertex-ai-triton.binary+json;json-header-size="
REDIRECT_HEADER = b"x-vertex-ai-triton-redirect"

_EMPTY_OK = response(200, b"", TEXT)
_EMPTY_BAD = response(400, b"", TEXT)
_EMPTY_NOT_ALLOWED = response(405, b"", TEXT)
_NOT_ALLOWED = response(405, b'{"error":"Method Not Allowed"}', TEXT)

# Redirect targets by route kind, with the method their handler is run with.
_REDIRECT_METHODS: dict[str, bytes] = {
    "server_metadata": b"GET",
    "live": b"GET",
    "ready": b"GET",
    "all_stats": b"GET",
    "model_metadata": b"GET",
    "model_ready": b"GET",
    "model_config": b"GET",
    "model_stats": b"GET",
    "infer": b"POST",
    "repo_index": b"POST",
    "repo_load": b"POST",
    "repo_unload": b"POST",
    "shared_memory": b"POST",  # GET for "status"
}


@dataclass(frozen=True)
class VertexAiRoutes:
    """The two routes tritonserver reads from the environment, as patterns."""

    predict: str
    health: str

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> VertexAiRoutes:
        """Raises InvalidArgumentError in tritonserver's words (its message names
        the predict variable "API_PREDICT_ROUTE")."""
        predict = env.get(PREDICT_ROUTE_ENV, "")
        health = env.get(HEALTH_ROUTE_ENV, "")
        if not predict:
            raise InvalidArgumentError(
                "API_PREDICT_ROUTE is not defined for Vertex AI endpoint"
            )
        if not health:
            raise InvalidArgumentError(
                "AIP_HEALTH_ROUTE is not defined for Vertex AI endpoint"
            )
        return cls(predict=predict, health=health)


def default_model(requested: str, ready_rows: Sequence[Mapping[str, Any]]) -> str:
    """The model the predict route serves: ``requested`` if a row of the ready
    repository index names it, else the name of the only row (one per ready
    version, as tritonserver counts). Raises InvalidArgumentError in its words."""
    if not requested:
        if len(ready_rows) != 1:
            raise InvalidArgumentError(
                "Expect the model repository contains only a single model if "
                "default model is not specified"
            )
        return str(ready_rows[0]["name"])
    if not any(row.get("name") == requested for row in ready_rows):
        raise InvalidArgumentError(f"Expect the default model '{requested}' is loaded")
    return requested


def _route_pattern(variable: str, pattern: str) -> re.Pattern[str] | None:
    """The compiled route; None (it matches no path, as an RE2 pattern that does
    not compile) when Python cannot compile it."""
    try:
        return re.compile(pattern)
    except re.error as error:
        logger.error(
            "%s '%s' is not a valid regular expression: %s", variable, pattern, error
        )
        return None


def _matches(pattern: re.Pattern[str] | None, path: str) -> bool:
    return pattern is not None and pattern.fullmatch(path) is not None


def redirect_url(target: bytes) -> bytes:
    """The KServe path of a redirect header's value: "/" before it, taken as it is
    (tritonserver matches the raw value: '%', '?' and '#' are escaped so that
    ``http_routes.resolve`` neither cuts nor decodes them)."""
    escaped = target.replace(b"%", b"%25").replace(b"?", b"%3F").replace(b"#", b"%23")
    return b"/" + escaped


class VertexAiFrontend(CloudFrontend):
    """The Vertex AI listener. ``metrics`` renders the Prometheus text of the
    ``metrics`` redirect. Takes the options of
    ``HttpFrontend`` that apply (no restricted APIs, header forwarding or TLS:
    tritonserver gives its Vertex AI listener none)."""

    BINARY_MIME = BINARY_MIME

    def __init__(
        self,
        manager: Any,
        registry: Any,
        routes: VertexAiRoutes,
        model_name: str,
        metrics: Callable[[], bytes],
        **options: Any,
    ) -> None:
        super().__init__(manager, registry, **options)
        self.routes = routes
        self.model_name = model_name
        self._predict = _route_pattern(PREDICT_ROUTE_ENV, routes.predict)
        self._health = _route_pattern(HEALTH_ROUTE_ENV, routes.health)
        self._metrics = metrics

    def native_route(self) -> dict[str, Any]:
        """The inference route the C++ server serves for this endpoint
        (http_native.NativeCloudFrontend): the predict route (RE2 there, as in
        tritonserver; one Python cannot compile is no route), without a redirect
        header; the rest stays here."""
        return {
            "path_pattern": self.routes.predict if self._predict is not None else "",
            "model": self.model_name,
            "binary_mime": BINARY_MIME,
            "control_header": REDIRECT_HEADER.decode(),
        }

    def _dispatch(self, message: HttpMessage, slot: Slot) -> None:
        path = message.url.split(b"?", 1)[0].decode("utf-8", "surrogateescape")
        if _matches(self._health, path):
            if message.method != b"GET":
                slot.done(_NOT_ALLOWED)
            else:
                self._answer_readiness(
                    slot,
                    lambda: _EMPTY_OK if self._manager.server_ready() else _EMPTY_BAD,
                    "",
                )
        elif _matches(self._predict, path):
            target = message.headers.get(REDIRECT_HEADER)
            if target is None:
                self._invoke(message, slot, self.model_name)
            else:
                self._redirect(message, slot, target)
        else:
            slot.done(_EMPTY_BAD)

    def _redirect(self, message: HttpMessage, slot: Slot, target: bytes) -> None:
        """The KServe v2 handler of ``/<target>``, run with the method it expects
        (the request itself must be a POST)."""
        if message.method != b"POST":
            slot.done(_EMPTY_NOT_ALLOWED)
            return
        if target == b"metrics":
            slot.done(response(200, self._metrics(), TEXT))
            return
        route = resolve(redirect_url(target))
        method = _REDIRECT_METHODS.get(route.kind)
        if method is None:
            slot.done(_EMPTY_BAD)
        elif route.kind == "infer":
            self._invoke(message, slot, route.model, route.version)
        else:
            if route.kind == "shared_memory" and route.action == "status":
                method = b"GET"
            self._handlers[route.kind](rebuilt(message, method=method), slot, route)
