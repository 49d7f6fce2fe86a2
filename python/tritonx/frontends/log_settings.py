"""Triton's logging extension: ``/v2/logging`` (GET, POST) and gRPC ``LogSettings``.

Both frontends share one store (``AppliedLogSettings`` applies every change
to the running ``tritonx`` logger at once). The two protocols validate differently
in Triton 2.51, so each has its own reader here: settings are applied one at a time
in Triton's order, and a bad one stops there (the ones before it stay applied, as in
Triton). Unknown keys are ignored; ``log_file`` cannot be changed over the network.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from tritonx import _native
from tritonx.errors import (
    InternalError,
    InvalidArgumentError,
    UnavailableError,
    UnsupportedError,
)
from tritonx.logging_setup import LogOptions, configure

# Triton's order, which is also the order of the response.
LOG_KEYS = (
    "log_file",
    "log_info",
    "log_warning",
    "log_error",
    "log_verbose_level",
    "log_format",
)
_FLAGS = ("log_info", "log_warning", "log_error")
_FORMATS = ("default", "ISO8601")
_FILE_REFUSED = "log file location can not be updated through network protocol"
UINT64_MAX = 2**64 - 1


def _verbose_level(value: int) -> int:
    """The level Triton keeps: an unsigned value cast to int32, a negative one
    taken as 0 (so 2^32 + 1 is 1, and 2^31 or 2^32 - 1 turn verbose logging off)."""
    level = value % 2**32
    return 0 if level >= 2**31 else level


class LogStore(Protocol):
    def get(self) -> dict[str, Any]: ...

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]: ...


def ordered(values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings in Triton's order."""
    return {key: values[key] for key in LOG_KEYS if key in values}


def http_update(store: LogStore, doc: Any) -> dict[str, Any]:
    """POST /v2/logging: ``doc`` is the parsed body. Returns the settings."""
    if not isinstance(doc, dict):
        return ordered(store.get())  # Triton finds no members and changes nothing
    for key in LOG_KEYS:
        value = doc.get(key)
        if value is None:
            continue
        if key == "log_file":
            raise UnsupportedError(_FILE_REFUSED)
        if key in _FLAGS:
            if not isinstance(value, bool):
                raise InternalError("attempt to access JSON non-boolean as boolean")
        elif key == "log_verbose_level":
            if type(value) is not int or not 0 <= value <= UINT64_MAX:
                raise InternalError(
                    "attempt to access JSON non-unsigned-integer as unsigned-integer"
                )
            value = _verbose_level(value)
        else:
            if not isinstance(value, str):
                raise InternalError("attempt to access JSON non-string as string")
            if value not in _FORMATS:
                raise UnavailableError(
                    f"invalid argument for --log_format, got: {value}"
                )
        store.update({key: value})
    return ordered(store.get())


def grpc_update(
    store: LogStore, settings: Mapping[str, tuple[str | None, Any]]
) -> dict[str, Any]:
    """LogSettings: ``settings`` maps each key to (the oneof field set, its value)."""
    for key in LOG_KEYS:
        if key not in settings:
            continue
        kind, value = settings[key]
        if key == "log_file":
            raise UnsupportedError(_FILE_REFUSED)
        if key in _FLAGS:
            if kind != "bool_param":
                raise InvalidArgumentError(f"expect boolean for '{key}'")
        elif key == "log_verbose_level":
            if kind != "uint32_param":
                raise InvalidArgumentError(f"expect int32 for '{key}'")
            value = _verbose_level(value)
        else:
            if kind != "string_param":
                raise InvalidArgumentError(f"expect string for '{key}'")
            if value not in _FORMATS:
                raise InvalidArgumentError(
                    f"invalid argument for log_format, got: {value}"
                )
        store.update({key: value})
    return ordered(store.get())


class AppliedLogSettings:
    """The LogSettings extension's store, applied to the running logger.

    Each protocol validates in ``frontends.log_settings`` (with Triton's messages);
    every accepted update reconfigures the ``tritonx`` logger at once.
    Thread-safety: updates come from gRPC and HTTP worker threads; one at a time.
    """

    def __init__(self, options: LogOptions) -> None:
        from tritonx.frontends.grpc import default_log_settings

        self._lock = threading.Lock()
        self.options = options
        self._store = default_log_settings()
        self._store.update(
            {
                "log_info": options.info,
                "log_warning": options.warning,
                "log_error": options.error,
                "log_verbose_level": options.verbose,
                "log_format": options.format,
            }
        )

    def get(self) -> dict[str, Any]:
        values = self._store.get()
        values["log_file"] = str(self.options.file or "")
        return values

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            values = self._store.update(changes)
            self.options = replace(
                self.options,
                info=bool(values["log_info"]),
                warning=bool(values["log_warning"]),
                error=bool(values["log_error"]),
                verbose=int(values["log_verbose_level"]),
                format=str(values["log_format"]),
            )
            # Lines the core queued before this change (the native HTTP engine's
            # line for this very request) are written under the old settings.
            _native.release_pending_refs()
            configure(self.options)
            return self.get()
