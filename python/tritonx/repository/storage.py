"""Where each model repository's files are read from.

A local repository is its directory. A cloud one (cloud/) is read through a
CloudMirror made the first time the location is used: listings refresh the mirror's
model directories, and a model directory is fetched before it is read. The
manager asks this class for both, so that nothing else knows a repository may be
remote.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from tritonx.errors import InternalError, InvalidArgumentError
from tritonx.repository.cloud import (
    SCHEMES,
    CloudStorageError,
    cloud_scheme,
    open_store,
)
from tritonx.repository.cloud.mirror import CloudMirror


class RepositoryStorage:
    """Thread-safe (mirrors are made under a lock and are thread-safe
    themselves). Owns the mirrors and their local directories until ``close``."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self._env = env
        self._mirrors: dict[str, CloudMirror] = {}
        self._lock = threading.Lock()

    def check(self, location: str) -> None:
        """Triton's start-up (and registration) checks of a repository location:
        InternalError when it cannot be reached, InvalidArgumentError when it is
        not a directory."""
        if cloud_scheme(location) is None:
            if not Path(location).exists():
                raise InternalError(f"failed to stat file {location}")
            return
        mirror = self._mirror(location)
        try:
            mirror.store.check()
            listed = mirror.store.list_objects()
        except CloudStorageError as error:
            raise InternalError(str(error)) from None
        if not listed and not mirror.store.at_bucket_root:
            raise InvalidArgumentError("repository path is not a valid directory")

    def local_root(self, location: str) -> Path | None:
        """The directory to list models from: a local repository's own, a cloud
        one's refreshed mirror (None while it could never be listed)."""
        if cloud_scheme(location) is None:
            return Path(location)
        return self._mirror(location).refresh()

    def fetch(self, model_dir: Path) -> None:
        """Bring a model directory up to date before it is read (nothing for a
        local one); InternalError naming the object when a download fails."""
        for mirror in list(self._mirrors.values()):
            if mirror.owns(model_dir):
                try:
                    mirror.fetch(model_dir)
                except CloudStorageError as error:
                    raise InternalError(str(error)) from None
                return

    def fetch_all(self, model_dirs: Iterable[Path]) -> dict[Path, InternalError]:
        """``fetch`` several model directories, a cloud repository's all at once
        (cloud/mirror.py); the directories that failed, with their errors."""
        dirs = list(model_dirs)
        failed: dict[Path, InternalError] = {}
        for mirror in list(self._mirrors.values()):
            mine = [d for d in dirs if mirror.owns(d)]
            for model_dir, error in mirror.fetch_all(mine).items():
                failed[model_dir] = InternalError(str(error))
        return failed

    def close(self) -> None:
        with self._lock:
            mirrors, self._mirrors = list(self._mirrors.values()), {}
        for mirror in mirrors:
            mirror.close()

    def _mirror(self, location: str) -> CloudMirror:
        with self._lock:
            mirror = self._mirrors.get(location)
            if mirror is None:
                try:
                    store = open_store(location, self._env)
                except CloudStorageError as error:
                    raise InternalError(str(error)) from None
                scheme = cloud_scheme(location) or ""
                mount = self._env.get(SCHEMES[scheme][1]) or None
                if mount:
                    Path(mount).mkdir(parents=True, exist_ok=True)
                root = Path(tempfile.mkdtemp(prefix="tritonx-repository-", dir=mount))
                mirror = CloudMirror(store, root)
                self._mirrors[location] = mirror
            return mirror
