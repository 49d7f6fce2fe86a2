"""Triton's trace extension: settings (``settings``, ``api``), the command line
(``config``) and the output of finished traces (``sink``, ``otel``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tritonx.tracing.api import TraceSettingsService
from tritonx.tracing.config import (
    TraceFlagError,
    add_trace_arguments,
    parse_trace_flags,
)
from tritonx.tracing.settings import TraceConfig, TraceManager
from tritonx.tracing.sink import FileSink, TraceWriter

__all__ = [
    "TraceConfig",
    "TraceFlagError",
    "TraceService",
    "TraceSettingsService",
    "add_trace_arguments",
    "parse_trace_flags",
    "start_tracing",
]


class TraceService:
    """One server's tracing: settings installed in the core's tracer and a writer
    thread for the finished traces. ``model_exists`` backs Triton's unknown-model
    check of per-model settings."""

    def __init__(
        self, config: TraceConfig, tracer: Any, model_exists: Callable[[str], bool]
    ) -> None:
        sink: Any
        if config.mode == "opentelemetry":
            from tritonx.tracing.otel import OtelSink

            sink = OtelSink(config)
        else:
            sink = FileSink()
        self.manager = TraceManager(config, tracer, sink)
        self.settings = TraceSettingsService(self.manager, model_exists)
        self._writer = TraceWriter(tracer, sink)

    def stop(self) -> None:
        self._writer.stop()


def start_tracing(config: TraceConfig, context: Any, manager: Any) -> TraceService:
    """The tracing of a server whose models share ``context`` (its tracer);
    ``manager``: the model manager, for Triton's unknown-model check: as in
    Triton 2.51, a model counts as known while a version of it is loaded (an
    unloaded model in the repository is unknown)."""

    def exists(name: str) -> bool:
        return any(
            row["name"] == name and row.get("state") == "READY"
            for row in manager.index(ready_only=True)
        )

    return TraceService(config, context.tracer, exists)
