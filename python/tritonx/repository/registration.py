"""Model repositories registered and unregistered while the server runs.

Triton 2.51's rules (``ModelRepositoryManager::RegisterModelRepository``), which
its SageMaker multi-model endpoint builds on:

* Explicit model control only; otherwise UNSUPPORTED "repository registration (or
  unregistration) is not allowed if model control mode is not EXPLICIT".
* A repository is a directory path, compared as the string given (the startup
  repositories as given on the command line). Registering one that is not a
  directory is INVALID_ARG; one already there, or a mapping whose model name is
  already mapped, is ALREADY_EXISTS and changes nothing.
* A mapping gives a sub-directory of the repository a model name. The mapped
  directory is listed (index) under that name only, a load of that name uses that
  directory whatever other repositories hold, the model's config takes that name
  (no "directory name must equal model name" check), and no other name reaches the
  directory. Two sub-directories mapped to one name are INVALID_ARG.
* Unregistering drops the repository and its mappings (a startup repository can be
  unregistered too; an unknown path is INVALID_ARG). Models loaded from it stay
  loaded; they leave the index with their repository.
* With ``--model-namespacing`` a registered repository is a namespace of its own,
  named by its path, like every other repository.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from tritonx.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    TritonXError,
    UnsupportedError,
)
from tritonx.repository.cloud import cloud_scheme
from tritonx.repository.polling import PollFailure
from tritonx.repository.records import ManagerOptions
from tritonx.repository.repository import (
    ModelId,
    OverrideDirectory,
    RepositoryListing,
    list_repositories,
)
from tritonx.repository.storage import RepositoryStorage

log = logging.getLogger("tritonx.repository")


class RepositoryRegistration:
    """The repository set of the ModelManager (mixed into it): the startup
    repositories plus those registered at run time, the name mappings, and where a
    load finds a model's files (``_model_source``)."""

    options: ManagerOptions

    def _init_registration(self) -> None:
        # Triton's repository_paths_: path strings, startup ones first.
        self._repository_paths: list[str] = [
            str(repo) for repo in self.options.repositories
        ]
        # model name -> (repository, mapped sub-directory); Triton's model_mappings_.
        self._mappings: dict[str, tuple[str, str]] = {}
        self.storage = RepositoryStorage()

    @property
    def repository_paths(self) -> list[str]:
        """The repositories models are looked up in, as path strings."""
        return list(self._repository_paths)

    def register_repository(
        self, repository: str, mapping: Mapping[str, str] | None = None
    ) -> None:
        """Add ``repository``; ``mapping``: sub-directory -> model name."""
        names: dict[str, str] = {}
        for subdir, name in (mapping or {}).items():
            if name in names:
                raise InvalidArgumentError(
                    f"failed to register '{repository}', there is a conflicting "
                    f"mapping for '{name}'"
                )
            names[name] = subdir
        self._check_explicit("registration")
        if not self._is_repository(repository):
            raise InvalidArgumentError(
                f"failed to register '{repository}', repository not found"
            )
        if repository in self._repository_paths:
            raise AlreadyExistsError(
                f"model repository '{repository}' has already been registered"
            )
        for name in names:
            if name in self._mappings:
                raise AlreadyExistsError(
                    f"failed to register '{name}', there is a conflicting mapping "
                    f"for '{name}'"
                )
        # New lists and dicts: a listing on a load thread may be reading the old.
        self._repository_paths = [*self._repository_paths, repository]
        self._mappings = {
            **self._mappings,
            **{name: (repository, subdir) for name, subdir in names.items()},
        }
        log.info("Model repository registered: %s", repository)

    def unregister_repository(self, repository: str) -> None:
        """Drop ``repository`` and its mappings; loaded models stay loaded."""
        self._check_explicit("unregistration")
        if repository not in self._repository_paths:
            raise InvalidArgumentError(
                f"failed to unregister '{repository}', repository not found"
            )
        self._repository_paths = [r for r in self._repository_paths if r != repository]
        self._mappings = {
            name: target
            for name, target in self._mappings.items()
            if target[0] != repository
        }
        log.info("Model repository unregistered: %s", repository)

    def _is_repository(self, repository: str) -> bool:
        if cloud_scheme(repository) is None:
            return Path(repository).is_dir()
        try:
            self.storage.check(repository)
        except TritonXError as error:
            log.error("failed to register '%s': %s", repository, error.message)
            return False
        return True

    def _check_explicit(self, what: str) -> None:
        if self.options.control_mode != "explicit":
            raise UnsupportedError(
                f"repository {what} is not allowed if model control mode is not "
                "EXPLICIT"
            )

    # -- lookups for the manager ---------------------------------------------------

    def _listing(self) -> RepositoryListing:
        repositories, mappings = self._repository_paths, self._mappings
        renamed: dict[str, dict[str, str]] = {}
        for name, (repository, subdir) in mappings.items():
            # Triton matches a repository's directories by the mapped path's last
            # component.
            renamed.setdefault(repository, {})[Path(subdir).name] = name
        return list_repositories(
            repositories, self.options.namespacing, renamed, self.storage.local_root
        )

    def _fetched_dirs(
        self, names: Iterable[str], listing: RepositoryListing
    ) -> Iterator[tuple[str, Path]]:
        """(key, model directory) of the listed models among ``names``, all
        fetched first (cloud ones at once); one that cannot be fetched is logged
        and left out, its load reports the failure."""
        found = {n: d for n in names if (d := listing.models.get(n)) is not None}
        failed = self.storage.fetch_all(found.values())
        for name, model_dir in found.items():
            error = failed.get(model_dir)
            if error is not None:
                log.error("failed to poll model '%s': %s", name, error.message)
                continue
            yield name, model_dir

    def _mapped_id(self, name: str) -> ModelId | None:
        """The identity of the model ``name`` maps to, or None when unmapped."""
        target = self._mappings.get(name)
        if target is None:
            return None
        return ModelId(target[0] if self.options.namespacing else "", name)

    def _mapped_dir(self, key: str) -> tuple[ModelId, Path] | None:
        """(identity, directory) of the mapped model filed under ``key``; a
        PollFailure when that directory does not exist."""
        for name, (repository, subdir) in list(self._mappings.items()):
            model_id = ModelId(repository if self.options.namespacing else "", name)
            if model_id.key == key:
                root = self.storage.local_root(repository)
                model_dir = (root or Path(repository)) / subdir
                if root is None or not model_dir.exists():
                    raise PollFailure(
                        name, f"mapped path '{repository}/{subdir}' does not exist"
                    )
                self.storage.fetch(model_dir)
                return model_id, model_dir
        return None

    def _is_mapped(self, model_id: ModelId) -> bool:
        return self._mapped_id(model_id.name) == model_id

    def _model_source(
        self, key: str, config: str | None, files: Mapping[str, bytes] | None
    ) -> tuple[ModelId, Path, Path, OverrideDirectory | None]:
        """(id, model dir, repository, temp dir) for a load; PollFailure if none.
        A model loaded from the request's files has no namespace, as in Triton."""
        if files:
            name = key
            if config is None:
                raise PollFailure(name, "model files given without a model config")
            try:
                override = OverrideDirectory(name, files)
            except OSError as error:
                # e.g. a file name too long for the file system: Triton's poll
                # failure for the client, the server-side path only in the log.
                raise PollFailure(
                    name, f"writing the request's files: {error}"
                ) from None
            return ModelId("", name), override.model_dir, override.repository, override
        mapped = self._mapped_dir(key)  # wins over any directory of that name
        if mapped is not None:
            return mapped[0], mapped[1], mapped[1].parent, None
        listing = self._listing()
        model_id = listing.ids.get(key, ModelId("", key))
        if key in listing.duplicates:
            raise PollFailure(
                model_id.name, "not unique across all model repositories", found=False
            )
        model_dir = listing.models.get(key)
        if model_dir is None:
            raise PollFailure(
                model_id.name, "model not found in any model repository.", found=False
            )
        self.storage.fetch(model_dir)
        return model_id, model_dir, model_dir.parent, None
