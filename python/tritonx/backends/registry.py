"""Find a backend by name: entry points of group ``tritonx.backends``, then built-ins,
then Python-based backends in the backend directory (python_based.py).

An installed tritonx declares its own backends as entry points too, so third-party
packages and built-ins are found the same way. The built-in table only matters when
tritonx runs from a source tree that was never installed (no dist-info to read).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tritonx import plugins
from tritonx.errors import InvalidArgumentError

if TYPE_CHECKING:
    from tritonx.backends.base import Backend, ModelConfig

ENTRY_POINT_GROUP = "tritonx.backends"
# tritonserver's default --backend-directory.
DEFAULT_BACKEND_DIRECTORY = "/opt/tritonserver/backends"

BUILTIN_BACKENDS: dict[str, str] = {
    "python": "tritonx.backends.python_backend:create_backend",
    "onnxruntime": "tritonx.backends.onnxruntime_backend:create_backend",
    "pytorch": "tritonx.backends.pytorch_backend:create_backend",
    "tensorrt": "tritonx.backends.tensorrt_backend:create_backend",
}

BackendFactory = Callable[[], "Backend"]

_lock = threading.Lock()
_factories: dict[str, BackendFactory] = {}
_backends: dict[str, Backend] = {}


def available_backends() -> list[str]:
    """Names of every backend that can be resolved (entry points and built-ins)."""
    return plugins.available(ENTRY_POINT_GROUP, BUILTIN_BACKENDS)


def get_backend_factory(name: str) -> BackendFactory:
    """The factory registered for ``name``; raises InvalidArgumentError if unknown."""
    with _lock:
        factory = _factories.get(name)
        if factory is not None:
            return factory
        target = plugins.find_target(name, ENTRY_POINT_GROUP, BUILTIN_BACKENDS)
        if target is None:
            # Triton's wording (backend_model.cc) so that clients see the same reason.
            raise InvalidArgumentError(
                f"unable to find backend library for backend '{name}', "
                "try specifying runtime on the model configuration."
            )
        factory = plugins.load_target(target, "backend")
        _factories[name] = factory
        return factory


def get_backend(name: str) -> Backend:
    """The shared Backend object for ``name``, created on first use.

    Like Triton, which loads a backend library once and shares it by every model of
    that backend, one Backend object serves all models.
    """
    backend = _backends.get(name)
    if backend is not None:
        return backend
    factory = get_backend_factory(name)
    with _lock:
        backend = _backends.get(name)
        if backend is None:
            backend = factory()
            _backends[name] = backend
        return backend


def resolve_backend(
    config: ModelConfig, backend_directory: Path
) -> tuple[Backend, str]:
    """The backend that serves ``config`` and the name its ``--backend-config``
    settings are read under, in Triton's search order: a backend registered under
    ``config.backend`` (tritonx's counterpart of a ``libtriton_<name>.so``), else
    ``<backend_directory>/<backend>/model.py``; ``runtime: "model.py"`` asks for
    the latter only. May fill ``runtime`` and parameters in ``config``."""
    from tritonx.backends import python_based

    if config.runtime == python_based.RUNTIME_FILE:
        found = python_based.find_python_based_backend(
            config, backend_directory, required=True
        )
    else:
        try:
            return get_backend(config.backend), config.backend
        except InvalidArgumentError:
            found = python_based.find_python_based_backend(
                config, backend_directory, required=False
            )
            if found is None:
                raise
    assert found is not None
    return found, python_based.SETTINGS_BACKEND


def clear_cache() -> None:
    """Forget resolved backends (after installing a plugin at runtime, in tests)."""
    with _lock:
        _factories.clear()
        _backends.clear()
