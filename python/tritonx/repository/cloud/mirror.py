"""A local copy of a cloud repository that the local-directory code reads.

Triton reads a cloud repository's listing and configs remotely and downloads
("localizes") a model's directory when it loads the model. The mirror does the
same with one local tree per repository:

* ``refresh()`` lists the repository (one paginated listing, no downloads) and
  makes an empty local directory for every model directory, removing those gone;
  the repository code lists models from there.
* ``fetch(model_dir)`` brings one model directory up to date before anything reads
  it (a load, a poll round's comparison): objects new or changed since the last
  fetch (by ETag or generation) are downloaded, files and directories gone
  remotely are removed, unchanged files are left alone. Each file gets the
  object's last-modified time, so poll mode sees remote changes as local ones.

A failed listing keeps the previous one (logged): a transient network error must
not make poll mode unload every model of the repository.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tritonx.repository.cloud.objects import (
    CloudStorageError,
    ObjectStore,
    StoredObject,
)

log = logging.getLogger("tritonx.repository")


@dataclass
class _LocalCopy:
    """What the mirror put in one model directory (keys relative to it)."""

    fetched: dict[str, str] = field(default_factory=dict)  # file -> version
    made: set[str] = field(default_factory=set)  # directories


class CloudMirror:
    """Thread-safe: ``refresh`` and ``fetch`` may run on several load threads at
    once; a lock per model directory serialises the fetches of one model and the
    index is swapped whole under its own lock. Owns ``root`` (removed by
    ``close``, as Triton removes its localized copies)."""

    def __init__(self, store: ObjectStore, root: Path) -> None:
        self.store = store
        self.root = root
        self._index: dict[str, dict[str, StoredObject]] | None = None
        self._index_lock = threading.Lock()
        self._model_locks: dict[str, threading.Lock] = {}
        # Per model directory, read and written under that model's lock.
        self._copies: dict[str, _LocalCopy] = {}

    def refresh(self) -> Path | None:
        """List the repository again; the local root, or None when the repository
        could not be listed yet."""
        try:
            objects = self.store.list_objects()
        except CloudStorageError as error:
            log.error(
                "failed to poll model repository '%s': %s", self.store.location, error
            )
            return self.root if self._index is not None else None
        index: dict[str, dict[str, StoredObject]] = {}
        for item in objects:
            model, sep, rest = item.key.partition("/")
            if sep and model and _safe(item.key):
                index.setdefault(model, {})[rest] = item
        with self._index_lock:
            self._index = index
        for model in index:
            (self.root / model).mkdir(exist_ok=True)
        for entry in list(self.root.iterdir()):
            if entry.name not in index:
                with self._model_lock(entry.name):
                    _remove(entry)
                    self._copies.pop(entry.name, None)
        return self.root

    def owns(self, path: Path) -> bool:
        return self.root in path.parents

    def fetch(self, path: Path) -> None:
        """Make the model directory holding ``path`` (a directory below this
        mirror's root; a registration may map a nested one) match the last listing;
        CloudStorageError when a download fails."""
        name = path.relative_to(self.root).parts[0]
        model_dir = self.root / name
        with self._index_lock:
            wanted = dict((self._index or {}).get(name, {}))
        with self._model_lock(name):
            self._sync_model(name, model_dir, wanted)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- internals ----------------------------------------------------------------

    def _model_lock(self, name: str) -> threading.Lock:
        with self._index_lock:
            return self._model_locks.setdefault(name, threading.Lock())

    def _sync_model(
        self, name: str, model_dir: Path, wanted: dict[str, StoredObject]
    ) -> None:
        files = {k: o for k, o in wanted.items() if not o.is_directory_marker}
        directories = {
            str(PurePosixPath(k)) for k, o in wanted.items() if o.is_directory_marker
        }
        for key in files:
            directories.update(
                str(p) for p in PurePosixPath(key).parents if str(p) != "."
            )
        copy = self._copies.setdefault(name, _LocalCopy())
        # Only what the mirror put there and the listing no longer has goes away:
        # files a model writes beside its own (e.g. __pycache__) stay.
        for key in sorted(set(copy.fetched) - set(files), reverse=True):
            (model_dir / key).unlink(missing_ok=True)
            del copy.fetched[key]
        for key in sorted(copy.made - directories, reverse=True):
            _remove(model_dir / key)
            copy.made.discard(key)
        model_dir.mkdir(exist_ok=True)
        for directory in sorted(directories):
            (model_dir / directory).mkdir(parents=True, exist_ok=True)
            copy.made.add(directory)
        for key, item in sorted(files.items()):
            target = model_dir / key
            if copy.fetched.get(key) == item.version and target.is_file():
                continue
            self._download(item, name, key, target)
            copy.fetched[key] = item.version

    def _download(self, item: StoredObject, model: str, key: str, target: Path) -> None:
        # A partial file never shows under the real name: download beside it,
        # then rename over it.
        fd, temp = tempfile.mkstemp(prefix=".tritonx-", dir=target.parent)
        os.close(fd)
        try:
            self.store.download(f"{model}/{key}", Path(temp))
            os.utime(temp, ns=(item.modified_ns, item.modified_ns))
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        log.debug("downloaded %s/%s/%s", self.store.location, model, key)


def _safe(key: str) -> bool:
    """A key whose local path stays inside the mirror."""
    parts = PurePosixPath(key).parts
    return bool(parts) and not PurePosixPath(key).is_absolute() and ".." not in parts


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
