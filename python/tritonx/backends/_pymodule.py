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
  and two models' ``model.py`` never collide. Nothing is put on ``sys.path`` (other
  threads import while a model loads): the model's own modules are found by
  ``SiblingFinder``, a ``sys.meta_path`` finder consulted after the normal ones
  (so, as in Triton, an installed module wins over a sibling of the same name),
  which looks in the directories of the model whose code runs (``running_files``)
  and keeps what it loads under private names (``<model module>.<name>``): one
  copy per model, shared by the file's top level and later imports.
  The model's code (the file and every sibling it loads) runs with builtins of its
  own whose ``__import__`` sets ``running_files`` to that model first, and rewrites
  ``import pkg.sub`` / ``from pkg.sub import x`` of a sibling package to its private
  name (the import system would look ``pkg`` up by its bare name). So imports in
  threads the model starts itself resolve too. Those builtins are a copy of the
  ``builtins`` module's namespace taken when the model loads.
"""

from __future__ import annotations

import builtins
import contextvars
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import re
import sys
import traceback
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tritonx.errors import InternalError

_counter = itertools.count()
_OWN_DIR = str(Path(__file__).resolve().parent)
_IMPORTLIB_DIR = str(Path(importlib.__file__).parent)  # import_module's frame
_import = builtins.__import__


def format_exception(exc: BaseException) -> str:
    """``"<Type>: <message>"`` plus the model's frames, innermost first, in the
    layout Triton's stub prints ("\\n\\nAt:\\n  file(line): function\\n")."""
    # pybind11 (Triton's stub) shows an empty message as "<EMPTY MESSAGE>".
    text = f"{type(exc).__name__}: {str(exc) or '<EMPTY MESSAGE>'}"
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
    then model directory), the prefix its modules are kept under in
    ``sys.modules``, and the builtins its code runs with."""

    search_dirs: tuple[str, ...]
    prefix: str
    builtins: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# The model whose code runs in this context: set around initialize, execute and
# finalize by the python backend (a contextvar, so an async execute's tasks see it),
# and around every import statement in the model's code (_model_builtins).
running_files: contextvars.ContextVar[ModelFiles | None] = contextvars.ContextVar(
    "tritonx_model_files", default=None
)
_files_of: weakref.WeakKeyDictionary[ModuleType, ModelFiles] = (
    weakref.WeakKeyDictionary()
)


def _model_builtins(files: ModelFiles) -> dict[str, Any]:
    """A copy of the builtins whose ``__import__`` resolves among ``files``."""
    prefix = files.prefix
    modules = sys.modules
    # Plain modules this model's code imported before (checked to still be the one
    # in sys.modules): an import statement in execute runs on every request.
    seen: dict[str, ModuleType] = {}

    def model_import(
        name: str,
        globals: dict[str, Any] | None = None,
        locals: dict[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        if level:  # relative: resolved from the importing module's private name
            return _import(name, globals, locals, fromlist, level)
        if not fromlist and "." not in name:
            own = modules.get(prefix + name)
            if own is not None:
                return own
            known = seen.get(name)
            if known is not None and modules.get(name) is known:
                return known
        head, dot, rest = name.partition(".")
        # Fast paths: a sibling imported before, or a module that is not one
        # (numpy, os.path), once no thread is still running its first import.
        own = modules.get(prefix + head)
        if own is None:
            found = modules.get(head)
            if found is None:
                pass  # a first import: it may be a sibling
            elif dot or (fromlist and hasattr(found, "__path__")):
                return _import(name, globals, locals, fromlist, level)
            elif not getattr(getattr(found, "__spec__", None), "_initializing", 0):
                if not fromlist:
                    seen[name] = found
                return found  # what __import__ returns
            else:
                return _import(name, globals, locals, fromlist, level)
        elif not dot and (not fromlist or all(hasattr(own, n) for n in fromlist)):
            return own
        context = running_files.set(files)
        try:
            if not dot:
                return _import(name, globals, locals, fromlist, level)
            top = _import(head)
            if not getattr(top, "__name__", "").startswith(prefix):
                return _import(name, globals, locals, fromlist, level)
            try:
                leaf = _import(f"{top.__name__}.{rest}", globals, locals, fromlist)
            except ModuleNotFoundError as exc:
                if exc.name is None or not exc.name.startswith(prefix):
                    raise
                shown = exc.name.removeprefix(prefix)
                raise ModuleNotFoundError(
                    f"No module named '{shown}'", name=shown
                ) from None
            return leaf if fromlist else top
        finally:
            running_files.reset(context)

    own_builtins = dict(builtins.__dict__)
    own_builtins["__import__"] = model_import
    return own_builtins


class _Loaded(importlib.abc.Loader):
    """Hands back a module the finder loaded before (``create_module`` returns it,
    ``exec_module`` leaves it as it is)."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self._module

    def exec_module(self, module: ModuleType) -> None:
        pass


class _WithModelBuiltins(importlib.abc.Loader):
    """The file's own loader, run with its model's builtins (so the sibling's own
    imports resolve among the model's files wherever it runs)."""

    def __init__(self, inner: importlib.abc.Loader, own: dict[str, Any]) -> None:
        self._inner = inner
        self._builtins = own

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__["__builtins__"] = self._builtins
        self._inner.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_data, ...
        return getattr(self._inner, name)


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
        found = importlib.util.spec_from_file_location(
            private,
            spec.origin,
            submodule_search_locations=spec.submodule_search_locations,
        )
        if found is not None and found.loader is not None:
            found.loader = _WithModelBuiltins(found.loader, files.builtins)
        return found


_SIBLINGS = SiblingFinder()
sys.meta_path.append(_SIBLINGS)
_sole_model = False


def set_sole_model() -> None:
    """This process serves one model instance (a stub process): import it as Triton
    does, with its directories on ``sys.path`` for good."""
    global _sole_model
    _sole_model = True


def model_files(model_file: Path, module: ModuleType) -> ModelFiles:
    """The files of the model ``module`` was loaded from (the same object each
    time for a module load_model_module made)."""
    known = _files_of.get(module)
    if known is not None:
        return known
    version_dir = model_file.parent
    files = ModelFiles(
        (str(version_dir), str(version_dir.parent)), f"{module.__name__}."
    )
    files.builtins.update(_model_builtins(files))
    return files


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
    name = _module_name(model_file)
    spec = importlib.util.spec_from_file_location(name, model_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    files = model_files(model_file, module)
    _files_of[module] = files
    module.__dict__["__builtins__"] = files.builtins
    sys.modules[name] = module  # dataclasses/pickle look the module up by name
    context = running_files.set(files)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        unload_model_module(module)
        raise InternalError(format_exception(exc)) from exc
    finally:
        running_files.reset(context)
    return module


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
