"""Trace settings as Triton keeps them: a global setting whose fallback is the
command line's, and per-model settings whose fields each either were set for the
model or follow the global one (clearing a field with null makes it follow again).

Every change installs a new version of the affected settings in the core's
``Tracer`` (sampling, rate and count run there); the count a client reads is the
core's remaining count.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

from tritonx.errors import InvalidArgumentError

LEVEL_TIMESTAMPS = 0x4
LEVEL_TENSORS = 0x8
FIELDS = ("level", "rate", "count", "log_frequency", "file")


def level_names(level: int) -> list[str]:
    names = []
    if level & LEVEL_TIMESTAMPS:
        names.append("TIMESTAMPS")
    if level & LEVEL_TENSORS:
        names.append("TENSORS")
    return names or ["OFF"]


@dataclass
class TraceConfig:
    """What --trace-config (and the deprecated --trace-* flags) set."""

    level: int = 0
    rate: int = 1000
    count: int = -1
    log_frequency: int = 0
    file: str = ""
    mode: str = "triton"  # or "opentelemetry"
    url: str = "http://localhost:4318/v1/traces"
    resource: dict[str, str] = field(default_factory=dict)
    bsp: dict[str, int] = field(default_factory=dict)


@dataclass
class NewSetting:
    """One update: a value per field to set, or the field's name in ``clear``."""

    values: dict[str, Any] = field(default_factory=dict)
    clear: set[str] = field(default_factory=set)


@dataclass
class Setting:
    """One version of a setting (Triton's TraceSetting); ``core`` samples."""

    level: int
    rate: int
    count: int
    log_frequency: int
    file: str
    mode: str
    specified: frozenset[str] = frozenset()
    core: Any = None

    def live_count(self) -> int:
        return int(self.core.count) if self.core is not None else self.count

    def invalid_reason(self) -> str | None:
        if self.level == 0:
            return "tracing is disabled"
        if self.rate == 0:
            return "sample rate must be non-zero"
        if self.mode == "triton" and not self.file:
            return "trace file name is not given"
        if self.live_count() == 0:
            return ""
        return None


class TraceManager:
    """The trace extension's settings for one server. Thread safe."""

    def __init__(self, config: TraceConfig, tracer: Any, sink: Any = None) -> None:
        self.config = config
        self._tracer = tracer
        self._sink = sink  # told about every installed version (file output)
        self._lock = threading.Lock()
        base = Setting(
            config.level,
            config.rate,
            config.count,
            config.log_frequency,
            config.file,
            config.mode,
        )
        self._default = base
        self._global = self._install("", replace(base))
        self._models: dict[str, Setting] = {}
        self._fallback_models: set[str] = set()

    @property
    def mode(self) -> str:
        return self.config.mode

    def _install(self, model: str, setting: Setting) -> Setting:
        reason = setting.invalid_reason()
        setting.core = self._tracer.install(
            model,
            setting.level,
            setting.rate,
            setting.count,
            reason is None,
            setting.mode == "opentelemetry",
        )
        if self._sink is not None:
            self._sink.register(setting)
        return setting

    def get(self, model: str = "") -> dict[str, Any]:
        """Triton's response: every value a string, the level a list."""
        with self._lock:
            setting = self._models.get(model, self._global) if model else self._global
        return {
            "trace_level": level_names(setting.level),
            "trace_rate": str(setting.rate),
            "trace_count": str(setting.live_count()),
            "log_frequency": str(setting.log_frequency),
            "trace_file": setting.file,
            "trace_mode": setting.mode,
        }

    def update(self, model: str, new: NewSetting) -> None:
        """Raises InvalidArgumentError with Triton's message when the result would
        be an invalid setting that does not turn tracing off."""
        with self._lock:
            self._update(model, new)
            if not model:
                for name in sorted(self._fallback_models):
                    self._update(name, NewSetting())

    def _update(self, model: str, new: NewSetting) -> None:
        current = self._models.get(model) if model else self._global
        fallback = self._global if model else self._default
        values: dict[str, Any] = {
            "level": fallback.level,
            "rate": fallback.rate,
            "count": fallback.live_count(),
            "log_frequency": fallback.log_frequency,
            "file": fallback.file,
        }
        specified = set()
        for name in FIELDS:
            if name in new.clear:
                continue
            if name in new.values:
                values[name] = new.values[name]
                specified.add(name)
            elif current is not None and name in current.specified:
                values[name] = (
                    current.live_count() if name == "count" else getattr(current, name)
                )
                specified.add(name)
        if model:
            if not specified:
                self._models.pop(model, None)
                self._fallback_models.discard(model)
                self._tracer.remove(model)
                return
            if len(specified) == len(FIELDS):
                self._fallback_models.discard(model)
            else:
                self._fallback_models.add(model)
        candidate = Setting(
            values["level"],
            values["rate"],
            values["count"],
            values["log_frequency"],
            values["file"],
            self.config.mode,
            frozenset(specified),
        )
        reason = candidate.invalid_reason()
        if reason is not None and candidate.level != 0:
            raise InvalidArgumentError(
                f"Attempting to set invalid trace setting :{reason}"
            )
        installed = self._install(model, candidate)
        if model:
            self._models[model] = installed
        else:
            self._global = installed
