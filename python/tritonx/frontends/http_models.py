"""HTTP routes that read and manage models: metadata, configuration and statistics,
and Triton's model repository extension (index, load, unload).

Functions from a request to the complete response, like ``http_extensions``'s, used
by ``HttpFrontend`` (and so by the native engine, which hands these routes to it).
Load and unload take a while: ``repository_action`` checks the request and starts
the manager's work, and ``finish_control`` (which the frontend runs as a task)
answers when it is done. Split out of ``http.py`` to keep it short.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable
from typing import Any

from tritonx.errors import InternalError, TritonXError, UnsupportedError
from tritonx.frontends import http_infer
from tritonx.frontends.http_message import HttpMessage, Slot
from tritonx.frontends.http_responses import (
    JSON,
    Buffer,
    dumps,
    exception_response,
    response,
)
from tritonx.frontends.http_routes import Route
from tritonx.repository.reports import INFERENCE_STATS_KEYS

_OK_JSON_EMPTY = response(200, b"", JSON)
_ZERO_STATS = {"count": 0, "ns": 0}

# -- metadata, config, statistics ------------------------------------------------------


def metadata_reply(manager: Any, route: Route) -> list[Buffer]:
    """``GET /v2/models/{m}[/versions/{v}]``."""
    try:
        body = dumps(manager.metadata(route.model, route.version))
    except Exception as exc:
        return exception_response(exc)
    return response(200, body)


def config_reply(manager: Any, route: Route) -> list[Buffer]:
    """``GET /v2/models/{m}[/versions/{v}]/config``."""
    from tritonx.config import config_to_json

    try:
        config = manager.config(route.model, route.version)
        body = config_to_json(config).encode()
    except Exception as exc:
        return exception_response(exc)
    return response(200, body)


def stats_reply(manager: Any, route: Route) -> list[Buffer]:
    """``GET /v2/models[/{m}[/versions/{v}]]/stats``."""
    try:
        stats = manager.statistics(route.model, route.version)
    except Exception as exc:
        return exception_response(exc)
    for entry in stats:
        # perf_analyzer needs every key, even for features (cache) not used here.
        inference = entry.setdefault("inference_stats", {})
        for key in INFERENCE_STATS_KEYS:
            inference.setdefault(key, dict(_ZERO_STATS))
        entry["version"] = str(entry.get("version", ""))
    return response(200, dumps({"model_stats": stats}))


# -- repository ------------------------------------------------------------------------


def index_reply(manager: Any, message: HttpMessage) -> list[Buffer]:
    """``POST /v2/repository/index``."""
    try:
        ready = False
        if message.body:
            request = http_infer.load_json(message.body)
            value = request.get("ready", False) if isinstance(request, dict) else False
            if not isinstance(value, bool):
                raise InternalError("attempt to access JSON non-boolean as boolean")
            ready = value
        rows = manager.index(ready)
    except Exception as exc:
        return exception_response(exc)
    # Models never loaded show their name only, like Triton.
    out = [{k: v for k, v in row.items() if v != "" and v is not None} for row in rows]
    return response(200, dumps(out))


def repository_action(manager: Any, message: HttpMessage, route: Route) -> Any:
    """``POST /v2/repository/models/{m}/{load,unload}``: the manager's load or
    unload, started (an awaitable); raises what the request gets as its error. An
    unload is answered once the model stops serving, its drain going on (as
    Triton)."""
    if route.repository:
        raise UnsupportedError("'repository_name' specification is not supported")
    if route.kind == "repo_load":
        return _load(manager, route.model, load_parameters(message.body))
    return manager.begin_unload(route.model, unload_dependents(message.body))


async def finish_control(action: Awaitable[Any], slot: Slot) -> None:
    """Answers a load or unload once ``action`` (``repository_action``'s) is done."""
    try:
        await action
    except Exception as exc:
        slot.done(exception_response(exc))
        return
    slot.done(_OK_JSON_EMPTY)


def load_parameters(body: bytes | bytearray) -> dict[str, Any]:
    """A load's ``parameters``, checked as Triton checks them before it loads (and
    so before the model control mode is looked at)."""
    if not body:
        return {}
    request = http_infer.load_json(body)
    if not isinstance(request, dict) or "parameters" not in request:
        return {}
    params = request["parameters"]
    if not isinstance(params, dict):  # null too: Triton lists its members
        raise InternalError("attempt to get members for non-object")
    return params


def unload_dependents(body: bytes | bytearray) -> bool:
    """An unload's ``unload_dependents``. Triton reads it from the body but drops
    whatever goes wrong there (a body that is not JSON, a value that is not a
    boolean): its unload's outcome overwrites that error, so the unload goes on,
    without dependents, and in a mode other than EXPLICIT is refused as any other."""
    try:
        request = http_infer.load_json(body) if body else None
    except TritonXError:
        return False
    params = request.get("parameters") if isinstance(request, dict) else None
    value = params.get("unload_dependents") if isinstance(params, dict) else None
    return value if isinstance(value, bool) else False


def _load(manager: Any, name: str, params: dict[str, Any]) -> Any:
    config: str | None = None
    files: dict[str, bytes] = {}
    for key, value in params.items():
        if not isinstance(value, str):
            raise InternalError("attempt to access JSON non-string as string")
        if key == "config":
            config = value
        elif key.startswith("file:"):
            files[key[len("file:") :]] = _b64decode(value)
        else:
            raise InternalError("unexpected error on creating Triton parameter")
    return manager.load(name, config, files or None)


def _b64decode(text: str) -> bytes:
    """Base64 decoded as Triton's decoder (libb64) decodes it: it never fails;
    what is not in the alphabet ('=' too) is skipped, and a last group of two or
    three characters gives the whole bytes it holds."""
    clean = re.sub(r"[^A-Za-z0-9+/]", "", text)
    whole = len(clean) // 4 * 4
    out = base64.b64decode(clean[:whole])
    rest = clean[whole:]
    if len(rest) >= 2:
        out += base64.b64decode(rest + "=" * (4 - len(rest)))
    return out
