"""Numbers in string-valued settings: a model's ``parameters`` and the server's
``--backend-config`` values. One rule and one error text for every backend: a value
that is not a number fails the model's load with INVALID_ARGUMENT naming the key,
never a Python exception's text."""

from __future__ import annotations

from collections.abc import Mapping

from tritonx.errors import InvalidArgumentError


def int_setting(settings: Mapping[str, str], key: str) -> int | None:
    """``settings[key]`` as an integer, or None when absent."""
    value = settings.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgumentError(
            f"failed to convert '{value}' to integral number for '{key}'"
        ) from None


def float_setting(settings: Mapping[str, str], key: str) -> float | None:
    """``settings[key]`` as a number, or None when absent (or empty)."""
    value = settings.get(key)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidArgumentError(
            f"failed to convert '{value}' to number for '{key}'"
        ) from None
