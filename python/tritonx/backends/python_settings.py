"""The python backend's server-wide settings (``--backend-config=python,<key>=<value>``,
Triton's names), read and checked at every python model's load, whatever its
execution mode: a value Triton's python backend refuses (not a number, zero or
negative) fails the load with INVALID_ARGUMENT, as there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tritonx.config.settings import int_setting
from tritonx.errors import InvalidArgumentError


@dataclass(frozen=True)
class PythonSettings:
    # A stub's shared-memory regions: first size and growth step (current Triton's
    # defaults; Triton 2.51 started at 64 MiB and refused less than 4 MiB, tritonx
    # takes any positive size since its regions grow in place).
    shm_default_byte_size: int = 1 << 20
    shm_growth_byte_size: int = 1 << 20
    # Checked as Triton checks it; stubs start from a zygote in milliseconds, so no
    # start-up handshake waits that long here.
    stub_timeout_seconds: int = 30


def python_settings(backend_config: Mapping[str, str]) -> PythonSettings:
    defaults = PythonSettings()
    values: dict[str, int] = {}
    for field in (
        "shm_default_byte_size",
        "shm_growth_byte_size",
        "stub_timeout_seconds",
    ):
        key = field.replace("_", "-")
        value = int_setting(backend_config, key)
        if value is None:
            value = getattr(defaults, field)
        elif value <= 0:
            raise InvalidArgumentError(f"{key} can't be smaller than or equal to zero.")
        values[field] = value
    return PythonSettings(**values)
