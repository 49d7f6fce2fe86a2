"""The trace extension's wire side: ``GET/POST /v2[/models/{m}]/trace/setting`` and
gRPC ``TraceSetting``, parsed and checked in Triton 2.51's order with its messages
(the file first, then level, rate, count, log frequency; unknown keys are ignored).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tritonx.errors import InvalidArgumentError, UnsupportedError
from tritonx.tracing.settings import (
    LEVEL_TENSORS,
    LEVEL_TIMESTAMPS,
    NewSetting,
    TraceManager,
)

_LEADING_INT = re.compile(r"\s*([+-]?\d+)")
_UINT32 = (0, 2**32 - 1)
_COUNT = (-1, 2**31 - 1)
_FILE_FIXED = "trace file location can not be updated through network protocol"


def _parse_int(key: str, text: str, bounds: tuple[int, int]) -> int:
    """Triton reads the leading integer (as strtoll: "3x" is 3, "1.5" is 1)."""
    match = _LEADING_INT.match(text)
    if match is None:
        raise InvalidArgumentError(f"Unable to parse '{key}', got: {text}")
    value = int(match.group(1))
    low, high = bounds
    if value > high or value < -(2**63):
        raise InvalidArgumentError(
            f"Unable to parse '{key}', value is out of range [ {low}, {high} ], "
            f"got: {text}"
        )
    return value


def _parse_levels(names: list[str]) -> int:
    level = 0
    for name in names:
        if name == "OFF":
            if len(names) > 1:
                raise InvalidArgumentError(
                    "Expect only one trace level 'OFF' is specified"
                )
        elif name == "TIMESTAMPS":
            level |= LEVEL_TIMESTAMPS
        elif name == "TENSORS":
            level |= LEVEL_TENSORS
    return level


def parse_setting(values: Mapping[str, Any], count_space: str = "") -> NewSetting:
    """``values``: key -> list of strings, or None to clear. ``count_space``: Triton
    words the count error with a space after the colon over gRPC only."""
    new = NewSetting()
    if "trace_file" in values:
        raise UnsupportedError(_FILE_FIXED)
    if "trace_level" in values:
        levels = values["trace_level"]
        if levels is None:
            new.clear.add("level")
        else:
            new.values["level"] = _parse_levels(levels)
    for key, name, bounds in (
        ("trace_rate", "rate", _UINT32),
        ("trace_count", "count", _COUNT),
        ("log_frequency", "log_frequency", _UINT32),
    ):
        if key not in values:
            continue
        raw = values[key]
        if raw is None:
            new.clear.add(name)
            continue
        if len(raw) != 1:
            raise InvalidArgumentError(f"expect only 1 value for '{key}'")
        text = raw[0]
        if name == "count":
            value = _parse_int(key, text, bounds)
            if value < -1:
                raise InvalidArgumentError(
                    f"Unable to parse '{key}'. Expecting value >= -1, got:"
                    f"{count_space}{text}"
                )
        else:
            value = _parse_int(key, text, bounds) % 2**32  # negatives wrap, as in C++
        new.values[name] = value
    return new


_JSON_KEYS = ("trace_level", "trace_rate", "trace_count", "log_frequency", "trace_file")


def _json_strings(key: str, value: Any) -> Any:
    """A JSON setting as parse_setting takes it: [strings], or None to clear. Triton
    answers a value of the wrong JSON type with its JSON library's text (as a 500;
    tritonx: 400)."""
    if value is None or key not in _JSON_KEYS:
        return value
    if key == "trace_level" and not isinstance(value, list):
        raise InvalidArgumentError("attempt to access JSON non-array as array")
    items = value if key == "trace_level" else [value]
    if not all(isinstance(item, str) for item in items):
        raise InvalidArgumentError("attempt to access JSON non-string as string")
    return list(items)


class _JsonSettings(Mapping[str, Any]):
    """An HTTP body's settings, each checked for its JSON type when read: Triton
    reads one setting at a time, in parse_setting's order (the file's mere presence
    first), so a bad value of a later key loses to an earlier key's error."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self._body = body

    def __getitem__(self, key: str) -> Any:
        return _json_strings(key, self._body[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._body)

    def __len__(self) -> int:
        return len(self._body)


def http_values(body: Any) -> Mapping[str, Any]:
    """The JSON body as parse_setting's ``values`` (not an object: no settings)."""
    return _JsonSettings(body if isinstance(body, dict) else {})


class TraceSettingsService:
    """GET/update for both protocols. ``model_exists(name)`` tells whether a model
    is known (Triton refuses settings of unknown models)."""

    def __init__(self, manager: TraceManager, model_exists: Callable[[str], bool]):
        self.manager = manager
        self._model_exists = model_exists

    def check_model(self, model: str) -> None:
        """Refuses a model that is not known (nothing to do for the global ones)."""
        if model and not self._model_exists(model):
            raise InvalidArgumentError(f"Request for unknown model : {model}")

    def get(self, model: str = "") -> dict[str, Any]:
        self.check_model(model)
        return self.manager.get(model)

    def update(self, model: str, values: Mapping[str, Any], grpc: bool = False):
        self.check_model(model)
        new = parse_setting(values, " " if grpc else "")
        if new.values or new.clear:
            self.manager.update(model, new)
        return self.manager.get(model)
