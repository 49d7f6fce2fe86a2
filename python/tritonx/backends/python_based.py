"""Python-based backends: a backend that is a directory holding a ``model.py``.

Triton lets one ``TritonPythonModel`` serve many models: a directory
``<backend-directory>/<name>/model.py`` is a backend called ``<name>`` (Triton's vLLM
backend is one). A model that says ``backend: "<name>"`` runs that file through the
python backend; its own directory keeps only data (a ``model.json``, weights) that
the file reads through ``args["model_repository"]`` and ``args["model_version"]``.

Found as Triton finds them: a registered backend of that name wins unless the
config's ``runtime`` is ``model.py``; a model found this way shows ``runtime:
"model.py"`` in its config, and a ``pb_exec_env_model.py.tar.gz`` beside the file
becomes its ``EXECUTION_ENV_PATH`` unless the model names its own. Server-wide
settings are the python backend's (``--backend-config=python,...``), as in Triton.
"""

from __future__ import annotations

from pathlib import Path

from tritonx.backends.base import ModelConfig, ModelContext
from tritonx.backends.python_backend import PythonBackend
from tritonx.errors import InvalidArgumentError

RUNTIME_FILE = "model.py"
EXECUTION_ENV_FILE = f"pb_exec_env_{RUNTIME_FILE}.tar.gz"
EXECUTION_ENV_KEY = "EXECUTION_ENV_PATH"
# Whose --backend-config settings a python-based backend's models read.
SETTINGS_BACKEND = "python"


class PythonBasedBackend(PythonBackend):
    """The python backend with one shared ``model.py`` for every model.

    Stateless apart from its location, like PythonBackend: safe to share between
    loads on the manager's threads."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory

    def model_file(self, ctx: ModelContext) -> Path:
        # Triton's stub imports the backend's file whatever default_model_filename
        # says; the model's version directory holds no code.
        return self.directory / RUNTIME_FILE


def backend_dir_for(name: str, backend_directory: Path) -> Path | None:
    """``<backend_directory>/<name>``, or None when ``name`` is not a plain
    directory name (a config must not point outside the backend directory)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        return None
    return backend_directory / name


def find_python_based_backend(
    config: ModelConfig, backend_directory: Path, *, required: bool
) -> PythonBasedBackend | None:
    """The python-based backend ``config.backend`` names, or None when it has no
    ``model.py`` and ``required`` is false (the caller reports Triton's "unable to
    find backend library"). ``required`` (``runtime: "model.py"``) makes a missing
    file an error naming the path searched. Fills ``runtime`` and the execution
    environment in ``config`` as Triton does."""
    directory = backend_dir_for(config.backend, backend_directory)
    model_file = directory / RUNTIME_FILE if directory is not None else None
    if model_file is None or not model_file.is_file():
        if not required:
            return None
        searched = model_file or backend_directory / config.backend / RUNTIME_FILE
        raise InvalidArgumentError(
            f"unable to find Python backend based backend library '{RUNTIME_FILE}' "
            f"for model '{config.name}', searched: '{searched}'"
        )
    assert directory is not None
    config.runtime = RUNTIME_FILE
    environment = directory / EXECUTION_ENV_FILE
    if EXECUTION_ENV_KEY not in config.parameters and environment.is_file():
        config.parameters[EXECUTION_ENV_KEY].string_value = str(environment)
    return PythonBasedBackend(config.backend, directory)


__all__ = [
    "RUNTIME_FILE",
    "SETTINGS_BACKEND",
    "PythonBasedBackend",
    "find_python_based_backend",
]
