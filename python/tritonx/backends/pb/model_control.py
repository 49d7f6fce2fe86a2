"""``pb_utils.load_model`` / ``unload_model`` / ``is_model_ready``: a Python model
managing the models of its own server, as Triton's python backend lets it.

Load and unload need ``--model-control-mode=explicit`` (else Triton's "explicit
model load / unload is not allowed if polling is enabled"); readiness works in
every mode. A failure raises TritonModelException worded as Triton's: "Failed to
load model: Failed to process the request for model '<instance>', message: <the
repository API's own text>". The calls are allowed once ``initialize`` returned
(during it: "Server not ready", Triton's answer while the server starts).

In-process the call finds its instance's scope (bls.py) and runs the manager's
control (repository/model_control.py). In a stub process ``remote`` sends it to
the server (bls_remote.py), which runs ``run`` for the stub's scope. A model that
unloads or reloads itself from its own ``execute`` gets the answer once the work
is under way, not done: its drain would wait for that very ``execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tritonx.backends.pb import bls
from tritonx.backends.pb.errors import TritonModelException
from tritonx.errors import InvalidArgumentError, TritonXError, UnavailableError

# Set in a stub process: (operation, arguments) -> the server's answer.
remote: Callable[[str, tuple[Any, ...]], Any] | None = None

_FAILURES = {
    "load": "Failed to load model",
    "unload": "Failed to unload model",
    "ready": "Failed to check model readiness",
}
_FILE_PREFIX = "file:"


def load_model(
    model_name: str, config: str = "", files: Mapping[str, bytes] | None = None
) -> None:
    """Load (or reload) ``model_name``; ``config`` a JSON model configuration,
    ``files`` "file:<version>/<name>" -> contents (then ``config`` is required)."""
    checked: dict[str, bytes] = {}
    for key, value in (files or {}).items():
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"the content of '{key}' must be bytes")
        checked[str(key)] = bytes(value)
    _call("load", (str(model_name), str(config or ""), checked))


def unload_model(model_name: str, unload_dependents: bool = False) -> None:
    """Unload every version of ``model_name`` (unknown names are no error)."""
    _call("unload", (str(model_name), bool(unload_dependents)))


def is_model_ready(model_name: str, model_version: str = "") -> bool:
    """Whether ``model_name`` (version ``model_version``, "" for the highest) can
    serve now; unknown models and versions are not ready."""
    return bool(_call("ready", (str(model_name), str(model_version))))


def _call(op: str, args: tuple[Any, ...]) -> Any:
    if remote is not None:
        return remote(op, args)
    scope, _ = bls._find_scope()
    return run(scope, op, args, allowed=scope is not None and scope.ready)


def _version(text: str) -> int | None:
    from tritonx import _native

    parsed: int | None = _native.parse_model_version(text)  # Triton's reading
    return parsed


def _files(name: str, files: Mapping[str, bytes]) -> dict[str, bytes] | None:
    out: dict[str, bytes] = {}
    for key, content in files.items():
        if not key.startswith(_FILE_PREFIX):
            raise InvalidArgumentError(
                f"failed to load '{name}': file parameter '{key}' must start with "
                f"'{_FILE_PREFIX}'"
            )
        out[key[len(_FILE_PREFIX) :]] = content
    return out or None


def run(scope: Any, op: str, args: tuple[Any, ...], *, allowed: bool) -> Any:
    """``op`` ("load", "unload", "ready") for the model of ``scope``, on its
    server; TritonModelException with Triton's wording when it fails."""
    instance = getattr(scope, "instance", "") if scope is not None else ""
    try:
        control = scope.link.control if scope is not None else None
        if control is None or not allowed:
            raise UnavailableError("Server not ready")
        own = args[0] == scope.link.name
        if op == "load":
            name, config, files = args
            control.load(name, config or None, _files(name, files), wait=not own)
            return None
        if op == "unload":
            name, dependents = args
            control.unload(name, dependents, wait=not own)
            return None
        name, version = args
        return control.ready(name, _version(version))
    except TritonXError as exc:
        raise TritonModelException(
            f"{_FAILURES[op]}: Failed to process the request for model "
            f"'{instance}', message: {exc.message}"
        ) from None
