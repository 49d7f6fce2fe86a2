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
* ``fetch_all(model_dirs)`` fetches several model directories at once (a start-up
  or a poll round). Downloads run at most ``DOWNLOADS_AT_ONCE`` at a time, on one
  pool per mirror that every fetch shares, across files and models: one stream
  per file leaves a bucket's bandwidth unused and serialises each file's network
  wait with the previous file's disk writes.

A failed listing keeps the previous one (logged): a transient network error must
not make poll mode unload every model of the repository.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tritonx.repository.cloud.objects import (
    CloudStorageError,
    ObjectStore,
    StoredObject,
)

log = logging.getLogger("tritonx.repository")

# Files downloaded at once per mirror. Measured on 4 x 128 MiB from the GCS
# emulator with the server's settings, 2 CPUs (benchmarks/bench_cloud_repository.py
# is the start-up around it): one at a time 0.51 s, two 0.38 s, three 0.44 s;
# more streams than CPUs only add switching. A real bucket serves each stream at
# its own pace, so two also keep one slow object from stalling the rest.
DOWNLOADS_AT_ONCE = 2
# Model directories fetched at once by ``fetch_all``: their threads only queue
# downloads and wait, so a few keep the download pool fed without a thread per
# model of a large repository.
_MODELS_AT_ONCE = 8


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
        self._downloads = ThreadPoolExecutor(
            DOWNLOADS_AT_ONCE, thread_name_prefix="tritonx-download"
        )

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

    def fetch_all(self, paths: Iterable[Path]) -> dict[Path, CloudStorageError]:
        """``fetch`` each of ``paths`` (model directories), all at once; the
        paths that failed, with their errors."""
        paths = list(dict.fromkeys(paths))
        if len(paths) <= 1:
            # Nothing to overlap: no coordinating thread.
            return {p: e for p in paths if (e := _fetch_error(self.fetch, p))}
        # The models' threads only queue their downloads on the shared pool and
        # wait, so the pool alone bounds the transfers.
        with ThreadPoolExecutor(min(len(paths), _MODELS_AT_ONCE)) as models:
            fetched = [(p, models.submit(_fetch_error, self.fetch, p)) for p in paths]
        return {p: e for p, f in fetched if (e := f.result())}

    def close(self) -> None:
        self._downloads.shutdown(wait=True, cancel_futures=True)
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
        wanted_now = [
            (key, item)
            for key, item in sorted(files.items())
            if copy.fetched.get(key) != item.version or not (model_dir / key).is_file()
        ]
        self._download_all(copy, model_dir, wanted_now)

    def _download_all(
        self, copy: _LocalCopy, model_dir: Path, items: list[tuple[str, StoredObject]]
    ) -> None:
        """Download ``items`` on the shared pool and wait for all of them; what
        arrived is recorded, the first failure raised. After a failure the
        downloads not yet started are dropped (they would likely fail alike)."""
        pending: list[tuple[str, StoredObject, Future[None]]] = [
            (key, item, self._downloads.submit(self._download, item, model_dir / key))
            for key, item in items
        ]
        failure: BaseException | None = None
        for key, item, future in pending:
            if failure is not None:
                future.cancel()
            try:
                future.result()
            except BaseException as error:  # raised below, after the others
                # A dropped download (CancelledError) is not the failure.
                failure = failure or error
                continue
            copy.fetched[key] = item.version
        if failure is not None:
            raise failure

    def _download(self, item: StoredObject, target: Path) -> None:
        # A partial file never shows under the real name: download beside it,
        # then rename over it. The old file, if any, stays until the new one
        # is complete.
        fd, temp = tempfile.mkstemp(prefix=".tritonx-", dir=target.parent)
        os.close(fd)
        try:
            self.store.download(item.key, Path(temp))
            os.utime(temp, ns=(item.modified_ns, item.modified_ns))
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        log.debug("downloaded %s/%s", self.store.location, item.key)


def _fetch_error(fetch: Callable[[Path], None], path: Path) -> CloudStorageError | None:
    try:
        fetch(path)
    except CloudStorageError as error:
        return error
    return None


def _safe(key: str) -> bool:
    """A key whose local path stays inside the mirror."""
    parts = PurePosixPath(key).parts
    return bool(parts) and not PurePosixPath(key).is_absolute() and ".." not in parts


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
