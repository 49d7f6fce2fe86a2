"""Loading a Triton ``model.py`` in process and reporting its errors like Triton.

Triton imports each model.py in its own stub process. Here every instance imports its
own copy of the file under a unique module name, so module globals stay per instance
(as with Triton's processes) and two models' ``model.py`` never collide. Helper
modules next to model.py are importable while it runs and are then dropped from
``sys.modules`` so that another model's helper of the same name is not shadowed.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
import threading
import traceback
from pathlib import Path
from types import ModuleType

from tritonx.errors import InternalError

_counter = itertools.count()
_import_lock = threading.Lock()  # sys.path and sys.modules edits are process-wide
_OWN_DIR = str(Path(__file__).resolve().parent)


def format_exception(exc: BaseException) -> str:
    """``"<Type>: <message>"`` plus the model's frames, innermost first, in the
    layout Triton's stub prints ("\\n\\nAt:\\n  file(line): function\\n")."""
    text = f"{type(exc).__name__}: {exc}"
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(("<frozen", _OWN_DIR))
    ]
    if not frames:
        return text
    lines = "".join(f"  {f.filename}({f.lineno}): {f.name}\n" for f in reversed(frames))
    return f"{text}\n\nAt:\n{lines}"


def _module_name(model_file: Path) -> str:
    # e.g. "_tritonx_model_7__add_sub__1__model": unique and a valid identifier.
    parts = "__".join(re.sub(r"\W", "_", p) for p in model_file.parts[-3:])
    return f"_tritonx_model_{next(_counter)}__{parts.removesuffix('_py')}"


def load_model_module(model_file: Path) -> ModuleType:
    """Execute ``model_file`` as a fresh module; errors become InternalError with
    Triton's message."""
    if not model_file.is_file():
        raise InternalError(
            f"Failed to load model file '{model_file}': file does not exist"
        )
    search_dir = str(model_file.parent)
    name = _module_name(model_file)
    spec = importlib.util.spec_from_file_location(name, model_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with _import_lock:
        before = set(sys.modules)
        sys.modules[name] = module  # dataclasses/pickle look the module up by name
        # sys.path is replaced, never edited in place: imports on other threads
        # (models load in parallel) iterate the list they started with, and an
        # entry removed under them would make them skip site-packages.
        sys.path = [search_dir, *sys.path]
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise InternalError(format_exception(exc)) from exc
        finally:
            restored = list(sys.path)
            restored.remove(search_dir)
            sys.path = restored
            _drop_local_modules(before, search_dir, keep=name)
    return module


def _drop_local_modules(before: set[str], search_dir: str, keep: str) -> None:
    for mod_name in set(sys.modules) - before:
        if mod_name == keep:
            continue
        path = getattr(sys.modules[mod_name], "__file__", None) or ""
        if path.startswith(search_dir):
            del sys.modules[mod_name]


def unload_model_module(module: ModuleType) -> None:
    sys.modules.pop(module.__name__, None)


def model_class(module: ModuleType, model_file: Path) -> type:
    cls = getattr(module, "TritonPythonModel", None)
    if cls is None:
        # Triton names the module "<version>.<file stem>" in this message.
        shown = f"{model_file.parent.name}.{model_file.stem}"
        raise InternalError(
            f"AttributeError: module '{shown}' has no attribute 'TritonPythonModel'"
        )
    return cls
