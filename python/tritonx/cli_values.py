"""The value syntax of tritonserver's flags (booleans, integers, choices,
``--backend-config`` and the restricted-API groups) with Triton's error wording, and
the tables of tritonserver flags tritonx ignores, refuses or passes to gRPC; shared
by ``cli.py`` and its flag groups."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from tritonx.frontends.http_access import compile_forward_pattern

# Accepted for compatibility; they tune resources tritonx manages differently.
IGNORED_FLAGS = (
    "--cache-directory",
    "--grpc-infer-allocation-pool-size",
    "--grpc-max-response-pool-size",
    "--grpc-infer-thread-count",
    "--cuda-virtual-address-size",
    "--min-supported-compute-capability",
    "--buffer-manager-thread-count",
    "--model-load-gpu-limit",
    "--enable-peer-access",
)

# tritonserver flags that change security or semantics; ignoring them would mislead.
# Refused with a message naming tritonx (none at present).
UNSUPPORTED_FLAGS: frozenset[str] = frozenset()

# tritonserver's keepalive / connection-age flags and the gRPC core channel argument
# each one sets; they are passed through unchanged, unset ones keep grpc's defaults.
GRPC_CHANNEL_FLAGS = {
    "--grpc-keepalive-time": "grpc.keepalive_time_ms",
    "--grpc-keepalive-timeout": "grpc.keepalive_timeout_ms",
    "--grpc-keepalive-permit-without-calls": "grpc.keepalive_permit_without_calls",
    "--grpc-http2-max-pings-without-data": "grpc.http2.max_pings_without_data",
    "--grpc-http2-min-recv-ping-interval-without-data": (
        "grpc.http2.min_ping_interval_without_data_ms"
    ),
    "--grpc-http2-max-ping-strikes": "grpc.http2.max_ping_strikes",
    "--grpc-max-connection-age": "grpc.max_connection_age_ms",
    "--grpc-max-connection-age-grace": "grpc.max_connection_age_grace_ms",
}

_TRUE = {"true", "on", "1"}
_FALSE = {"false", "off", "0"}


class UsageError(Exception):
    """A command-line error; the message is printed as is."""


def parse_bool(text: str) -> bool:
    """Triton's boolean values: true/false, on/off, 1/0 in any case."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid value for bool option: {text}")


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"Invalid option value. Got {text}") from None


def parse_count(text: str) -> int:
    """A non-negative integer (a size or a count where 0 may mean "no bound")."""
    value = parse_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"Invalid option value. Got {text}")
    return value


def parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"Invalid option value. Got {text}") from None


def ignored_dest(flag: str) -> str:
    return "ignored_" + flag[2:].replace("-", "_")


def parse_choice(flag: str, choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"invalid argument for {flag}")
        return text

    return parse


def parse_backend_config(values: Sequence[str]) -> dict[str, dict[str, str]]:
    """``<backend>,<setting>=<value>``; without a backend the setting is global ("").
    A comma with nothing before it, an empty setting or an empty value is refused,
    as tritonserver does."""
    result: dict[str, dict[str, str]] = {}
    for value in values:
        backend, comma, setting = value.partition(",")
        if comma and not backend:
            raise UsageError(
                'Bad option: "--backend-config".\n'
                "No backend specified. --backend-config option format is <backend "
                f"name>,<setting>=<value> or <setting>=<value>. Got {value}"
            )
        if not comma:
            backend, setting = "", value
        key, equals, val = setting.partition("=")
        if not equals or not key or not val:
            raise UsageError(
                'Bad option: "--backend-config".\n'
                "--backend-config option format is "
                f"'<backend name>,<setting>=<value>'. Got {value}"
            )
        result.setdefault(backend, {})[key] = val
    return result


def parse_metrics_config(values: Sequence[str]) -> list[tuple[str, str]]:
    """``<setting>=<value>`` (repeatable) -> [(setting, value)] in order, with
    tritonserver's message for a malformed one (no ``=``, an empty side, or a
    ``<name>,`` prefix, which Triton reserves). What the settings mean is
    ``metrics_config.MetricsConfig``'s business."""
    result: list[tuple[str, str]] = []
    for value in values:
        setting, equals, val = value.partition("=")
        if not equals or not setting or not val or "," in setting:
            raise UsageError(
                'Bad option: "--metrics-config".\n'
                f"--metrics-config option format is <setting>=<value>. Got {value}"
            )
        result.append((setting, val))
    return result


def parse_restricted_features(
    values: Sequence[str], flag: str, feature_type: str, groups: Sequence[str]
) -> list[tuple[str, str, str]]:
    """``<group>[,<group>...]:<key>=<value>`` (repeatable) -> [(group, key, value)].

    tritonserver's parser for ``--grpc-restricted-protocol`` (``feature_type``
    "protocol") and ``--http-restricted-api`` ("api"), with its messages: a group
    may appear in one flag only.
    """
    result: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for value in values:
        names, colon, setting = value.partition(":")
        key, equals, val = setting.partition("=")
        if not colon or not equals or not names or not key or not val:
            raise UsageError(
                f'Bad option: "{flag}".\n{flag} option format is '
                f"'<config name>:<setting>=<value>'. Got {value}"
            )
        for name in names.split(","):
            if name not in groups:
                raise UsageError(
                    f'Bad option: "{flag}".\n'
                    f"unknown restricted {feature_type} '{name}'"
                )
            if name in seen:
                raise UsageError(
                    f'Bad option: "{flag}".\nrestricted {feature_type} '
                    f"'{name}' can not be specified in multiple config groups"
                )
            seen.add(name)
            result.append((name, key, val))
    return result


def forward_pattern(flag: str, pattern: str) -> str:
    """The pattern if it compiles. tritonserver logs a bad one and then forwards
    nothing; refusing it at start-up makes the mistake visible."""
    if pattern:
        try:
            compile_forward_pattern(pattern)
        except ValueError as error:
            raise UsageError(f'Bad option: "{flag}".\n{error}') from None
    return pattern
