"""The value syntax of tritonserver's flags (booleans, integers, choices,
``--backend-config`` and the restricted-API groups) with Triton's error wording,
shared by ``cli.py`` and its flag groups."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from tritonx.frontends.http_access import compile_forward_pattern

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
    """``<backend>,<setting>=<value>``; without a backend the setting is global ("")."""
    result: dict[str, dict[str, str]] = {}
    for value in values:
        backend, comma, setting = value.partition(",")
        if not comma:
            backend, setting = "", value
        key, equals, val = setting.partition("=")
        if not equals or not key:
            raise UsageError(
                'Bad option: "--backend-config".\n'
                "--backend-config option format is "
                f"'<backend name>,<setting>=<value>'. Got {value}"
            )
        result.setdefault(backend, {})[key] = val
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
