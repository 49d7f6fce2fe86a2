"""Loading a Triton ``model.py`` and reporting its errors like Triton.

Triton imports each model.py in its own stub process: it appends the version
directory and the model directory to ``sys.path`` and imports the file as
``"<version>.model"``, so sibling modules (``import helper``, lazily inside
``initialize`` or ``execute`` too) and even ``import model`` (a second copy, which
``unittest.main("model")`` in Triton's own test models relies on) resolve there.

* In a stub process (one instance per process, ``set_sole_model``) tritonx does
  exactly that.
* In process, many models share one interpreter. Every instance imports its own
  copy of the file under a unique module name, so module globals stay per instance
  and two models' ``model.py`` never collide. While the file executes, its
  directory is first on ``sys.path`` and the helpers it imports are dropped from
  ``sys.modules`` afterwards, so another model's helper of the same name is not
  shadowed. Later imports (from ``initialize``, ``execute``, ``finalize``) go
  through ``SiblingFinder``: a ``sys.meta_path`` finder, consulted after the normal
  ones, that looks in the directories of the model whose code runs in the current
  context (``running_files``) and keeps what it loads under private names. A
  submodule imported as ``import pkg.sub`` after load is the one case it cannot
  serve (the import system looks the parent up by its bare name); ``from pkg
  import sub`` works.
"""

from __future__ import annotations

import contextvars
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import re
import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tritonx.errors import InternalError

_counter = itertools.count()
_import_lock = threading.Lock()  # sys.path and sys.modules edits are process-wide
_OWN_DIR = str(Path(__file__).resolve().parent)
_IMPORTLIB_DIR = str(Path(importlib.__file__).parent)  # import_module's frame


def format_exception(exc: BaseException) -> str:
    """``"<Type>: <message>"`` plus the model's frames, innermost first, in the
    layout Triton's stub prints ("\\n\\nAt:\\n  file(line): function\\n")."""
    text = f"{type(exc).__name__}: {exc}"
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(("<frozen", _OWN_DIR, _IMPORTLIB_DIR))
    ]
    if not frames:
        return text
    lines = "".join(f"  {f.filename}({f.lineno}): {f.name}\n" for f in reversed(frames))
    return f"{text}\n\nAt:\n{lines}"


def _module_name(model_file: Path) -> str:
    # e.g. "_tritonx_model_7__add_sub__1__model": unique and a valid identifier.
    parts = "__".join(re.sub(r"\W", "_", p) for p in model_file.parts[-3:])
    return f"_tritonx_model_{next(_counter)}__{parts.removesuffix('_py')}"


@dataclass(frozen=True)
class ModelFiles:
    """Where the running model's own imports are looked up (version directory,
    then model directory), and the prefix its lazily imported modules are kept
    under in ``sys.modules``."""

    search_dirs: tuple[str, ...]
    prefix: str


# The model whose code runs in this context: set around initialize, execute and
# finalize by the python backend (a contextvar, so an async execute's tasks see it).
running_files: contextvars.ContextVar[ModelFiles | None] = contextvars.ContextVar(
    "tritonx_model_files", default=None
)


class _Loaded(importlib.abc.Loader):
    """Hands back a module the finder loaded before (``create_module`` returns it,
    ``exec_module`` leaves it as it is)."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self._module

    def exec_module(self, module: ModuleType) -> None:
        pass


class SiblingFinder(importlib.abc.MetaPathFinder):
    """Top-level imports the normal finders did not resolve, looked up among the
    running model's files (see the module docstring). Thread-safety: stateless;
    the import system's per-name locks order loads of one private name."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        files = running_files.get()
        if files is None or path is not None:
            return None
        private = files.prefix + fullname
        loaded = sys.modules.get(private)
        if loaded is not None:
            return importlib.util.spec_from_loader(private, _Loaded(loaded))
        spec = importlib.machinery.PathFinder.find_spec(
            fullname, list(files.search_dirs)
        )
        if spec is None or spec.loader is None or spec.origin is None:
            return None
        # The same file under the private name: its own relative imports then
        # resolve under that name too.
        return importlib.util.spec_from_file_location(
            private,
            spec.origin,
            submodule_search_locations=spec.submodule_search_locations,
        )


_SIBLINGS = SiblingFinder()
sys.meta_path.append(_SIBLINGS)
_sole_model = False


def set_sole_model() -> None:
    """This process serves one model instance (a stub process): import it as Triton
    does, with its directories on ``sys.path`` for good."""
    global _sole_model
    _sole_model = True


def model_files(model_file: Path, module: ModuleType) -> ModelFiles:
    version_dir = model_file.parent
    return ModelFiles(
        (str(version_dir), str(version_dir.parent)), f"{module.__name__}."
    )


def _load_as_triton(model_file: Path) -> ModuleType:
    version_dir, model_dir = model_file.parent, model_file.parent.parent
    for entry in (str(version_dir), str(model_dir)):
        if entry not in sys.path:
            sys.path.append(entry)
    # A python-based backend's runtime model.py has no version directory above it.
    name = (
        f"{version_dir.name}.{model_file.stem}"
        if version_dir.name.isdigit()
        else model_file.stem
    )
    try:
        return importlib.import_module(name)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise InternalError(format_exception(exc)) from exc


def load_model_module(model_file: Path) -> ModuleType:
    """Execute ``model_file`` as a fresh module; errors become InternalError with
    Triton's message."""
    if not model_file.is_file():
        raise InternalError(
            f"Failed to load model file '{model_file}': file does not exist"
        )
    if _sole_model:
        return _load_as_triton(model_file)
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
    name = module.__name__
    sys.modules.pop(name, None)
    # list() copies the keys at once: other threads import while this runs.
    for lazily in [m for m in list(sys.modules) if m.startswith(name + ".")]:
        del sys.modules[lazily]


def model_class(module: ModuleType, model_file: Path) -> type:
    cls = getattr(module, "TritonPythonModel", None)
    if cls is None:
        # Triton names the module "<version>.<file stem>" in this message.
        shown = f"{model_file.parent.name}.{model_file.stem}"
        raise InternalError(
            f"AttributeError: module '{shown}' has no attribute 'TritonPythonModel'"
        )
    return cls
