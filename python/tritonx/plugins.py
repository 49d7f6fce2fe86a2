"""Finding plug-ins by name: an entry point of a group first, then a table of
built-ins (``"module:attribute"`` targets). Backends (``tritonx.backends``) and
repository agents (``tritonx.repoagents``) are found this way."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any


def entry_point_targets(group: str) -> dict[str, str]:
    """name -> "module:attribute" of every installed entry point of ``group``."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def available(group: str, builtins: Mapping[str, str]) -> list[str]:
    """Every name that can be resolved in ``group`` or ``builtins``."""
    return sorted({*builtins, *entry_point_targets(group)})


def find_target(name: str, group: str, builtins: Mapping[str, str]) -> str | None:
    """The target registered for ``name`` (an entry point wins), or None."""
    return entry_point_targets(group).get(name) or builtins.get(name)


def load_target(target: str, what: str) -> Callable[..., Any]:
    """Import ``"module:attribute.path"``; TypeError naming ``what`` (e.g.
    "backend") when it is not callable."""
    module_name, _, attr = target.partition(":")
    obj: object = importlib.import_module(module_name.strip())
    for part in attr.strip().split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{what} entry point '{target}' is not callable")
    return obj
