"""Reading model repositories: model directories, version directories, policies.

Nothing here is cached: Triton lists the repositories again for every index or load
request, so models added or removed on disk show up without a restart.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from tritonx.config import ModelConfig
from tritonx.errors import InvalidArgumentError

log = logging.getLogger("tritonx.repository")

# Triton's reason for a model name found in more than one repository.
DUPLICATE_REASON = "model appears in two or more repositories"


class ModelId(NamedTuple):
    """A model's identity: its name within a namespace. The namespace is "" unless
    the server runs with ``--model-namespacing``; then it is the path of the model's
    repository as given on the command line (Triton's ModelIdentifier)."""

    namespace: str
    name: str

    @property
    def key(self) -> str:
        """What the manager files the model under: the name alone without a
        namespace, so that without namespacing keys and names are the same."""
        return f"{self.namespace}::{self.name}" if self.namespace else self.name


@dataclass
class RepositoryListing:
    """Model directories of all repositories by key: unique ones and duplicated
    ones (a name in two repositories, possible only without namespacing)."""

    models: dict[str, Path] = field(default_factory=dict)
    ids: dict[str, ModelId] = field(default_factory=dict)
    duplicates: set[str] = field(default_factory=set)

    def names(self) -> list[str]:
        """Every key, in Triton's order: by namespace, then by name."""
        keys = set(self.models) | self.duplicates
        return sorted(keys, key=lambda k: tuple(self.ids[k]))

    def keys_named(self, name: str) -> list[str]:
        """The keys of the model directories called ``name``, in every namespace."""
        return [k for k in self.names() if self.ids[k].name == name]


def list_repositories(
    repositories: Sequence[Path | str],
    namespacing: bool = False,
    mapped: Mapping[str, Mapping[str, str]] | None = None,
    local_root: Callable[[str], Path | None] = Path,
) -> RepositoryListing:
    """Every sub-directory of every repository is a model (plain files are not).

    ``mapped``: per repository (as its path string), directory name -> model name
    for the model directories a registration mapped (registration.py); those are
    listed under the mapped name only, as Triton's index does. ``local_root``: the
    directory a repository's models are listed from (storage.py: a cloud
    repository's mirror; None when it cannot be listed)."""
    listing = RepositoryListing()
    for repo in repositories:
        renamed = (mapped or {}).get(str(repo), {})
        root = local_root(str(repo))
        if root is None:
            continue
        try:
            entries = sorted(root.iterdir())
        except OSError as exc:
            log.error("failed to list model repository '%s': %s", repo, exc)
            continue
        for entry in entries:
            if not entry.is_dir():
                continue
            name = renamed.get(entry.name, entry.name)
            model_id = ModelId(str(repo) if namespacing else "", name)
            key = model_id.key
            listing.ids[key] = model_id
            if key in listing.models or key in listing.duplicates:
                listing.duplicates.add(key)
                listing.models.pop(key, None)
            else:
                listing.models[key] = entry
    return listing


def _version_number(dir_name: str) -> int | None:
    # Triton ignores non-numeric names and numbers written with a leading zero
    # ("01"); "0" itself is a valid version.
    if not dir_name.isdigit() or (len(dir_name) > 1 and dir_name.startswith("0")):
        return None
    return int(dir_name)


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """Numeric version sub-directories of a model directory."""
    found: dict[int, Path] = {}
    try:
        entries = list(model_dir.iterdir())
    except OSError:
        return found
    for entry in sorted(entries):
        if entry.is_dir():
            version = _version_number(entry.name)
            if version is not None:
                found[version] = entry
            elif entry.name not in _NOT_VERSIONS:
                _warn_ignored_version(entry.name)
    return found


# Sub-directories of a model that Triton does not take for versions.
_NOT_VERSIONS = frozenset({"warmup", "initial_state", "configs"})


def _warn_ignored_version(name: str) -> None:
    # Triton 2.51 warns about each directory it ignores when it loads the model.
    if len(name) > 1 and name.startswith("0"):
        log.warning(
            "ignore version directory '%s' which contains leading zeros in its "
            "directory name",
            name,
        )
    elif not re.match(r"\s*[+-]?\d", name):
        log.warning(
            "ignore version directory '%s' which fails to convert to integral number",
            name,
        )


def select_versions(config: ModelConfig, available: Iterable[int]) -> list[int]:
    """The versions the config's version_policy asks for, ascending.

    Versions named by a ``specific`` policy but missing on disk are skipped
    silently, as Triton does.
    """
    have = sorted(set(available))
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return have
    if which == "specific":
        wanted = set(policy.specific.versions)
        return [v for v in have if v in wanted]
    count = policy.latest.num_versions if which == "latest" else 1
    return have[-count:] if count > 0 else []


class OverrideDirectory:
    """A temporary model directory holding the files of a load request.

    With ``file:<path>`` parameters Triton loads the model from a fresh directory
    that contains only those files (the repository's copy is not used). The
    directory is named after the model because the model name is taken from it.
    """

    def __init__(self, name: str, files: Mapping[str, bytes]) -> None:
        # Every path is checked before anything is written: the name and the file
        # paths come from the client and must not reach outside the new directory.
        _check_directory_name(name)
        targets = [(_safe_relative(rel), content) for rel, content in files.items()]
        self._root = Path(tempfile.mkdtemp(prefix="tritonx-model-"))
        self.repository = self._root
        self.model_dir = self._root / name
        try:
            self.model_dir.mkdir()
            for rel_path, content in targets:
                target = self.model_dir / rel_path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        except BaseException:
            self.cleanup()
            raise

    def cleanup(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)


# What C++'s std::isspace counts as white space ("C" locale): the characters a
# load's model name is trimmed of before it is checked (Python's str.strip()
# would also drop other Unicode spaces, which Triton keeps).
_NAME_SPACES = " \t\n\v\f\r"


def check_name_to_load(name: str) -> None:
    """Refuse a load whose model name is blank or could step out of a repository
    (``..``, or a '/' anywhere), as Triton's repository manager does since it
    validates load names (its core, March 2026): both are INVALID_ARG, judged on
    the name trimmed of white space. Triton 2.51 had no such check, and a load of
    ``..`` there read the repository's parent directory as a model; tritonx never
    resolved such names to a directory but answered them with an INTERNAL poll
    failure (a 500 for a client's mistake). Unloads are not checked, as in
    Triton: no model can have such a name, so unloading one changes nothing."""
    trimmed = name.strip(_NAME_SPACES)
    if not trimmed:
        raise InvalidArgumentError(
            "Model name cannot be empty. Please enter a valid name to deploy."
        )
    if trimmed == ".." or "/" in trimmed:
        raise InvalidArgumentError(
            f"invalid model name '{name}', model name must not contain path "
            "traversal characters"
        )


def _check_directory_name(name: str) -> None:
    """A model name that names a directory inside the override root, and only that."""
    if not name or name in (".", "..") or any(c in name for c in ("/", "\\", "\0")):
        raise InvalidArgumentError(
            f"invalid model name '{name}': a model loaded with files must be named "
            "by a single directory name"
        )


def _safe_relative(rel: str) -> PurePosixPath:
    # A leading '/' names the model directory, as in Triton 2.51 (it joins the path
    # under the new directory): "file:/1/model.py" is "file:1/model.py".
    # A path ending in '/' names a directory, no file (Triton fails to write it).
    text = rel.removeprefix("file:").lstrip("/")
    path = PurePosixPath(text)
    if not path.parts or ".." in path.parts or text.endswith("/"):
        raise InvalidArgumentError(f"invalid file path '{rel}' in model load request")
    return path
