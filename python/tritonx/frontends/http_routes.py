"""URL -> route for the KServe v2 / Triton HTTP API, with a cache per raw path.

The patterns follow Triton's server regexes. Resolving a path costs one dict lookup
once it has been seen, so the inference path never runs a regex.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote


class Route(NamedTuple):
    kind: str  # see ROUTE_METHODS
    model: str = ""
    version: str = ""
    repository: str = ""


NOT_FOUND = Route("not_found")

# Allowed method per route kind; any other method gets 405.
ROUTE_METHODS: dict[str, bytes] = {
    "server_metadata": b"GET",
    "live": b"GET",
    "ready": b"GET",
    "all_stats": b"GET",
    "model_metadata": b"GET",
    "infer": b"POST",
    "model_ready": b"GET",
    "model_config": b"GET",
    "model_stats": b"GET",
    "repo_index": b"POST",
    "repo_load": b"POST",
    "repo_unload": b"POST",
}

_SERVER = re.compile(r"/v2(?:/health/(live|ready))?")
_MODEL = re.compile(
    r"/v2/models/([^/]+)(?:/versions/([0-9]+))?"
    r"(?:/(infer|generate|generate_stream|ready|config|stats|trace/setting))?"
)
_REPOSITORY = re.compile(
    r"/v2/repository(?:/([^/]+))?/(index|models/([^/]+)/(load|unload))"
)
_MODEL_ACTIONS = {
    None: "model_metadata",
    "infer": "infer",
    "ready": "model_ready",
    "config": "model_config",
    "stats": "model_stats",
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


def _resolve(url: bytes) -> Route:
    path = url.split(b"?", 1)[0].split(b"#", 1)[0].decode("latin-1")
    if path == "/v2/models/stats":
        return Route("all_stats")
    match = _SERVER.fullmatch(path)
    if match:
        return Route(match.group(1) or "server_metadata")
    match = _MODEL.fullmatch(path)
    if match:
        kind = _MODEL_ACTIONS.get(match.group(3))
        if kind is None:
            # generate / trace exist in Triton but not here.
            return NOT_FOUND
        return Route(kind, _decode(match.group(1)), match.group(2) or "")
    match = _REPOSITORY.fullmatch(path)
    if match:
        repo = _decode(match.group(1) or "")
        if match.group(2) == "index":
            return Route("repo_index", repository=repo)
        kind = "repo_load" if match.group(4) == "load" else "repo_unload"
        return Route(kind, _decode(match.group(3)), repository=repo)
    return NOT_FOUND


def _decode(segment: str) -> str:
    # tritonclient quotes model names; the raw bytes are UTF-8.
    if "%" in segment:
        return unquote(segment.encode("latin-1").decode("utf-8", "replace"))
    return segment.encode("latin-1").decode("utf-8", "replace")
