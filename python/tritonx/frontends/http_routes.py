"""URL -> route for the KServe v2 / Triton HTTP API, with a cache per raw path.

The patterns follow Triton's server regexes. Resolving a path costs one dict lookup
once it has been seen, so the inference path never runs a regex. Shared memory
routes carry the memory kind ("system"/"cuda"), the region and the action;
``generate_stream`` is the generate route with the action "stream".
"""

from __future__ import annotations

import logging
import re
from typing import NamedTuple
from urllib.parse import unquote

from tritonx import _native

_log = logging.getLogger("tritonx.frontends.http")


class Route(NamedTuple):
    kind: str  # see ROUTE_METHODS
    model: str = ""
    version: str = ""
    repository: str = ""
    memory: str = ""  # shared memory routes: "system" or "cuda"
    region: str = ""
    # shared memory routes: "status", "register" or "unregister"; generate: "stream"
    # for generate_stream
    action: str = ""


NOT_FOUND = Route("not_found")

# Allowed method per route kind; any other method gets 405. An empty entry: the
# handler checks the method itself (it depends on more than the kind).
ROUTE_METHODS: dict[str, bytes] = {
    "shared_memory": b"",
    "logging": b"",
    "trace": b"",
    "server_metadata": b"GET",
    "live": b"GET",
    "ready": b"GET",
    "all_stats": b"GET",
    "model_metadata": b"GET",
    "infer": b"POST",
    "generate": b"POST",
    "model_ready": b"GET",
    "model_config": b"GET",
    "model_stats": b"GET",
    "repo_index": b"POST",
    "repo_load": b"POST",
    "repo_unload": b"POST",
}

# Triton's --http-restricted-api groups, in its order (restricted_features.h).
RESTRICTED_CATEGORIES = (
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)

# Route kind -> the group its Triton handler checks before anything else.
ROUTE_CATEGORIES: dict[str, str] = {
    "live": "health",
    "ready": "health",
    "model_ready": "health",
    "server_metadata": "metadata",
    "model_metadata": "metadata",
    "infer": "inference",
    "generate": "inference",
    "model_config": "model-config",
    "repo_index": "model-repository",
    "repo_load": "model-repository",
    "repo_unload": "model-repository",
    "all_stats": "statistics",
    "model_stats": "statistics",
    "trace": "trace",
    "logging": "logging",
    "shared_memory": "shared-memory",
}

_SERVER = re.compile(r"/v2(?:/health/(live|ready))?")
_MODEL = re.compile(
    r"/v2/models/([^/]+)(?:/versions/([0-9]+))?"
    r"(?:/(infer|generate|generate_stream|ready|config|stats|trace/setting))?"
)
_REPOSITORY = re.compile(
    r"/v2/repository(?:/([^/]+))?/(index|models/([^/]+)/(load|unload))"
)
_SHARED_MEMORY = re.compile(
    r"/v2/(system|cuda)sharedmemory(?:/region/([^/]+))?/(status|register|unregister)"
)
_MODEL_ACTIONS = {
    None: "model_metadata",
    "infer": "infer",
    "generate": "generate",
    "generate_stream": "generate",
    "ready": "model_ready",
    "config": "model_config",
    "stats": "model_stats",
    "trace/setting": "trace",
}
_EXACT = {
    "/v2/models/stats": "all_stats",
    "/v2/trace/setting": "trace",
    "/v2/logging": "logging",
}
_CACHE_LIMIT = 4096
_cache: dict[bytes, Route] = {}


def resolve(url: bytes) -> Route:
    """Route for a request target (query string ignored, names percent-decoded)."""
    route = _cache.get(url)
    if route is None:
        route = _resolve(url)
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[url] = route
    return route


def url_path(url: bytes) -> str:
    """A request target's path: without its query or fragment, as sent."""
    return url.split(b"?", 1)[0].split(b"#", 1)[0].decode("latin-1")


def log_request(method: bytes, url: bytes, not_found: bool = False) -> None:
    """Triton's verbose line for each request, or for one no route matches."""
    if _log.isEnabledFor(logging.DEBUG):
        # The native engine's request line may still wait in the core's log
        # queue (its HTTP threads never wait for the GIL): written first.
        _native.release_pending_refs()
        name, path = method.decode("latin-1"), url_path(url)
        texts = _native.http_messages
        line = (
            texts.error_log_line(name, path, 404)
            if not_found
            else texts.request_log_line(name, path)
        )
        _log.debug("%s", line)


def _resolve(url: bytes) -> Route:
    path = url_path(url)
    exact = _EXACT.get(path)
    if exact is not None:
        return Route(exact)
    match = _SERVER.fullmatch(path)
    if match:
        return Route(match.group(1) or "server_metadata")
    match = _MODEL.fullmatch(path)
    if match:
        kind = _MODEL_ACTIONS[match.group(3)]
        if kind == "trace" and match.group(2):
            return NOT_FOUND  # Triton: a model's trace settings have no version
        action = "stream" if match.group(3) == "generate_stream" else ""
        return Route(kind, _decode(match.group(1)), match.group(2) or "", action=action)
    match = _REPOSITORY.fullmatch(path)
    if match:
        repo = _decode(match.group(1) or "")
        if match.group(2) == "index":
            return Route("repo_index", repository=repo)
        kind = "repo_load" if match.group(4) == "load" else "repo_unload"
        return Route(kind, _decode(match.group(3)), repository=repo)
    match = _SHARED_MEMORY.fullmatch(path)
    if match:
        region = _decode(match.group(2) or "")
        return Route(
            "shared_memory", memory=match.group(1), region=region, action=match.group(3)
        )
    return NOT_FOUND


def _decode(segment: str) -> str:
    # tritonclient quotes model names; the raw bytes are UTF-8.
    if "%" in segment:
        return unquote(segment.encode("latin-1").decode("utf-8", "replace"))
    return segment.encode("latin-1").decode("utf-8", "replace")
