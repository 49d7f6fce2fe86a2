"""Per-model Python environments for stubs (Triton's ``EXECUTION_ENV_PATH``).

A model may name an environment whose interpreter runs its stub: a directory (a venv
or an unpacked conda environment) or a ``.tar.gz`` made by conda-pack, unpacked once
next to itself. ``$$TRITON_MODEL_DIRECTORY`` in the value is the model's directory.
The stub then imports the environment's packages; only ``tritonx`` and the
``triton_python_backend_utils`` shim come from the server, through a directory that
holds links to just those two (putting the server's site-packages on the path would
shadow the environment's own versions). The interpreter must be the server's Python
version (the stub loads the server's compiled extension), as with Triton's stub.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path

from tritonx.errors import InternalError, InvalidArgumentError

_lock = threading.Lock()
_shim_dir: Path | None = None


def interpreter(value: str, model_dir: Path, model_name: str) -> Path:
    """The Python interpreter of the environment ``value`` names. A relative path is
    looked up in the model's directory, then (as Triton does) the working directory.
    A path that does not exist, or a directory with neither an interpreter nor
    ``bin/activate``, fails with Triton's texts."""
    given = value.replace("$$TRITON_MODEL_DIRECTORY", str(model_dir))
    path = Path(given)
    if not path.is_absolute() and (model_dir / path).exists():
        path = model_dir / path
    if not path.exists():
        raise InternalError(f"Failed to get the canonical path for {given}.")
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        path = _unpacked(path)
    for name in ("bin/python3", "bin/python"):
        candidate = path / name
        if candidate.exists():
            return candidate
    if not (path / "bin" / "activate").exists():
        raise InternalError(
            f"Path {path}/bin/activate does not exist. The Python environment "
            "should contain an 'activate' script."
        )
    raise InvalidArgumentError(
        f"EXECUTION_ENV_PATH of model '{model_name}': no Python interpreter in "
        f"'{path}' (expected bin/python3)"
    )


def _unpack_target(archive: Path) -> Path:
    """Beside the archive (kept across restarts), or, where that directory is
    read-only (a mounted repository, a system backend directory), in a directory
    of the system's temporary space named after the archive's path."""
    stem = archive.name.removesuffix(".gz").removesuffix(".tar").removesuffix(".tgz")
    if os.access(archive.parent, os.W_OK):
        return archive.with_name(f"{stem}.unpacked")
    import hashlib

    key = hashlib.sha256(str(archive.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "tritonx-envs" / f"{key}-{stem}.unpacked"


def _unpacked(archive: Path) -> Path:
    target = _unpack_target(archive)
    with _lock:
        stamp = target / ".tritonx-unpacked"
        if stamp.exists() and stamp.stat().st_mtime >= archive.stat().st_mtime:
            return target
        shutil.rmtree(target, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="tar")
        unpack = target / "bin" / "conda-unpack"
        if unpack.exists():  # conda-pack rewrites its prefixes with this
            import subprocess

            subprocess.run([str(target / "bin" / "python"), str(unpack)], check=True)
        stamp.touch()
        return target


def python_path() -> str:
    """A PYTHONPATH exposing only tritonx and the pb_utils shim to a stub."""
    global _shim_dir
    with _lock:
        if _shim_dir is None:
            import triton_python_backend_utils

            import tritonx

            shim = Path(tempfile.mkdtemp(prefix="tritonx-stub-path-"))
            for module in (tritonx, triton_python_backend_utils):
                source = Path(module.__file__ or "").parent
                os.symlink(source, shim / source.name)
            atexit.register(shutil.rmtree, shim, ignore_errors=True)
            _shim_dir = shim
        return str(_shim_dir)
