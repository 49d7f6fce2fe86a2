"""HTTP routes of Triton's shared memory, logging and trace extensions.

Pure functions from a request to the complete response, used by the Python HTTP
frontend (and so by the native engine, which hands these routes to it). The logic
they share with gRPC lives in ``shared_memory`` and ``log_settings``.
"""

from __future__ import annotations

from typing import Any

from tritonx.frontends import http_infer
from tritonx.frontends.http_message import HttpMessage
from tritonx.frontends.http_responses import (
    JSON,
    Buffer,
    dumps,
    exception_response,
    response,
)
from tritonx.frontends.http_routes import Route
from tritonx.frontends.log_settings import LogStore, http_update, ordered
from tritonx.frontends.shared_memory import (
    SharedMemoryControl,
    http_cuda_register,
    http_system_register,
)
from tritonx.tracing.api import http_values

_NOT_ALLOWED = response(405, b'{"error":"Method Not Allowed"}', JSON)
_OK_EMPTY = response(200, b"", JSON)


def shared_memory_reply(
    control: SharedMemoryControl, message: HttpMessage, route: Route
) -> list[Buffer]:
    """``/v2/{system,cuda}sharedmemory[/region/{r}]/{status,register,unregister}``."""
    wanted = b"GET" if route.action == "status" else b"POST"
    if message.method != wanted:
        return _NOT_ALLOWED
    system = route.memory == "system"
    try:
        if route.action == "status":
            if system:
                rows = control.system_status(route.region)
            else:
                rows = control.cuda_status(route.region)
            return response(200, dumps(rows))
        if route.action == "register":
            if system:
                if not route.region:
                    http_system_register(control, route.region, None)
                http_system_register(
                    control, route.region, http_infer.load_json(message.body)
                )
            else:
                body = http_infer.load_json(message.body) if route.region else None
                http_cuda_register(control, route.region, body)
        elif system:
            control.system_unregister(route.region)
        else:
            control.cuda_unregister(route.region)
    except Exception as exc:
        return exception_response(exc)
    return _OK_EMPTY


def logging_reply(store: LogStore, message: HttpMessage) -> list[Buffer]:
    """``GET`` / ``POST /v2/logging``."""
    try:
        if message.method == b"GET":
            return response(200, dumps(ordered(store.get())))
        if message.method != b"POST":
            return _NOT_ALLOWED
        current = http_update(store, http_infer.load_json(message.body))
    except Exception as exc:
        return exception_response(exc)
    return response(200, dumps(current))


def trace_reply(store: Any, message: HttpMessage, route: Route) -> list[Buffer]:
    """``GET`` / ``POST /v2[/models/{m}]/trace/setting`` (a ``TraceSettingsService``)."""
    try:
        if message.method == b"GET":
            return response(200, dumps(store.get(route.model)))
        if message.method != b"POST":
            return _NOT_ALLOWED
        # Triton looks the model up, then reads the body (empty: a parse error).
        store.check_model(route.model)
        values = http_values(http_infer.load_json(message.body))
        return response(200, dumps(store.update(route.model, values)))
    except Exception as exc:
        return exception_response(exc)
