"""``--openai-restricted-api``: route groups that answer only requests carrying a
given header with a given value (Triton's groups and 401 body).

Groups: ``inference`` (completions, chat completions, embeddings), ``model-repository`` (the
model list and cards, load and unload), ``metrics`` and ``health``. A group may be
named once; each flag gives ``<group>[,<group>...] <header> <value>``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request

GROUPS = ("inference", "model-repository", "metrics", "health")


class RestrictionError(ValueError):
    """A bad ``--openai-restricted-api`` value."""


class Unauthorized(Exception):
    """A restricted route asked for without its header: HTTP 401."""

    def __init__(self, header: str) -> None:
        super().__init__(
            f"This API is restricted, expecting header '{header}' with valid value"
        )


def parse_restrictions(
    specs: Sequence[Sequence[str]] | None,
) -> dict[str, tuple[str, str]]:
    """group -> (header, value) from the flag's (groups, header, value) triples."""
    restrictions: dict[str, tuple[str, str]] = {}
    for groups, header, value in specs or []:
        for group in groups.split(","):
            if group not in GROUPS:
                raise RestrictionError(
                    f"Unknown API '{group}'. Available APIs: {list(GROUPS)}"
                )
            if group in restrictions:
                raise RestrictionError(
                    f"restricted api '{group}' can not be specified in multiple "
                    "config groups"
                )
            restrictions[group] = (header, value)
    return restrictions


def requires(group: str) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A route dependency: raises ``Unauthorized`` unless the request has the
    header and value ``group`` is restricted to (if it is). A coroutine function,
    so FastAPI runs it on the event loop: a plain function goes to its thread pool,
    a hop there and back on every request (a tenth of the loop's time under load,
    measured)."""

    async def check(request: Request) -> None:
        restrictions: dict[str, tuple[str, str]] = getattr(
            request.app.state, "restrictions", {}
        )
        rule = restrictions.get(group)
        if rule is None:
            return
        header, expected = rule
        given = request.headers.get(header)
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized(header)

    return check
