"""``--trace-config`` and the deprecated ``--trace-*`` flags, read as Triton 2.51
reads them (its messages, its warnings)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

from tritonx.tracing.settings import LEVEL_TENSORS, LEVEL_TIMESTAMPS, TraceConfig

_DEPRECATED = {
    "--trace-file": "--trace-config triton,file=<filepath>",
    "--trace-rate": "--trace-config rate=<rate value>",
    "--trace-level": "--trace-config level=<OFF|TIMESTAMPS|TENSORS>",
    "--trace-count": "--trace-config count=<count value>",
    "--trace-log-frequency": "--trace-config triton,log-frequency=<log frequency value>",
}
_BSP = ("bsp_max_queue_size", "bsp_schedule_delay", "bsp_max_export_batch_size")


class TraceFlagError(ValueError):
    def __init__(self, flag: str, detail: str) -> None:
        super().__init__(detail)
        self.flag = flag
        self.detail = detail


def add_trace_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Tracing")
    g.add_argument(
        "--trace-config",
        action="append",
        default=[],
        metavar="<string>",
        help="Trace setting: '<setting>=<value>' (level, rate, count, mode) or "
        "'<mode>,<setting>=<value>' (triton: file, log-frequency; opentelemetry: "
        "url, resource, bsp_*). May be given several times.",
    )
    for flag in _DEPRECATED:
        g.add_argument(
            flag,
            action="append",
            default=None,
            metavar="<value>",
            help=f"Deprecated: use {_DEPRECATED[flag]}.",
        )


def _int(flag: str, text: str, low: int = -(2**63)) -> int:
    try:
        value = int(text)
    except ValueError:
        raise TraceFlagError(flag, f"Invalid option value. Got {text}") from None
    if value < low:
        raise TraceFlagError(flag, f"Invalid option value. Got {text}")
    return value


def _level(flag: str, text: str, current: int) -> int:
    name = text.upper()
    if name == "OFF":
        return 0
    if name in ("TIMESTAMPS", "MIN", "MAX"):
        return current | LEVEL_TIMESTAMPS
    if name == "TENSORS":
        return current | LEVEL_TENSORS
    raise TraceFlagError(flag, f"invalid value for trace level option: {text.lower()}")


def _mode(flag: str, text: str) -> str:
    if text in ("triton", "opentelemetry"):
        return text
    raise TraceFlagError(
        flag,
        f"invalid value for trace mode option: {text}. Available options are "
        '"triton" and "opentelemetry"',
    )


def parse_trace_flags(
    entries: Sequence[str],
    args: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> tuple[TraceConfig, list[str]]:
    """The trace configuration and the deprecation warnings to print; ``args``
    holds the deprecated flags' values by argparse name, ``environ`` the
    OTEL_BSP_* variables (default: this process's environment)."""
    config = TraceConfig()
    bsp: dict[str, str] = {}
    warnings: list[str] = []
    for flag in _DEPRECATED:
        for value in args.get(flag[2:].replace("-", "_")) or ():
            warnings.append(
                f"Warning: '{flag}' has been deprecated and will be removed in "
                f"future releases. Please use '{_DEPRECATED[flag]} instead."
            )
            if flag == "--trace-file":
                config.file = value
            elif flag == "--trace-rate":
                config.rate = _int(flag, value, 0)
            elif flag == "--trace-level":
                config.level = _level(flag, value, config.level)
            elif flag == "--trace-count":
                config.count = _int(flag, value)
            else:
                config.log_frequency = _int(flag, value, 0)
    for entry in entries:
        mode, sep, rest = entry.partition(",")
        if sep:
            mode = _mode("--trace-config", mode)
        else:
            mode, rest = "", entry
        key, eq, value = rest.partition("=")
        if not eq:
            raise TraceFlagError(
                "--trace-config",
                "--trace-config option format is '<trace mode>,<setting>=<value>'. "
                f"Got {entry}",
            )
        flag = f"--trace-config {key}"
        if mode == "triton":
            if key == "file":
                config.file = value
            elif key in ("log-frequency", "log_frequency"):
                config.log_frequency = _int(flag, value, 0)
        elif mode == "opentelemetry":
            if key == "url":
                config.url = value
            elif key == "resource":
                name, _, attr = value.partition("=")
                config.resource[name] = attr
            elif key in _BSP:
                bsp[key] = value  # read once the mode is known (_batch_span)
        elif key == "level":
            config.level = _level(flag, value, config.level)
        elif key == "rate":
            config.rate = _int(flag, value, 0)
        elif key == "count":
            config.count = _int(flag, value)
        elif key == "mode":
            config.mode = _mode(flag, value)
    if config.mode == "opentelemetry":
        _batch_span(config, bsp, os.environ if environ is None else environ)
    return config, warnings


def _batch_span(
    config: TraceConfig, given: Mapping[str, str], environ: Mapping[str, str]
) -> None:
    """As Triton 2.51, in OpenTelemetry mode only: each batch-span-processor
    setting from --trace-config, else from its OTEL_BSP_* variable; a value
    that is not a uint32 stops the server, naming where it came from."""
    for key in _BSP:
        if key in given:
            flag, text = f"--trace-config opentelemetry,{key}", given[key]
        elif f"OTEL_{key.upper()}" in environ:
            flag = f"OTEL_{key.upper()}"
            text = environ[flag]
        else:
            continue
        value = _int(flag, text, 0)
        if value >= 2**32:
            raise TraceFlagError(flag, f"Invalid option value. Got {text}")
        config.bsp[key] = value
