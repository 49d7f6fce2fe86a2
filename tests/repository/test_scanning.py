"""Repository listing, version directories and version policies (no loading)."""

from __future__ import annotations

from pathlib import Path

import pytest
from repo_helpers import Repo, make_manager

from tritonx.config import parse_config_text
from tritonx.repository.repository import (
    list_repositories,
    select_versions,
    version_dirs,
)


def test_version_dirs_skip_non_numeric_and_zero_prefixed(repo: Repo) -> None:
    model_dir = repo.add("m", versions=[0, 1, 2, 10, "01", "abc", "007"])
    (model_dir / "3").write_text("a file, not a version directory")
    assert sorted(version_dirs(model_dir)) == [0, 1, 2, 10]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("", [10]),
        ("version_policy: { latest: { num_versions: 2 } }", [2, 10]),
        ("version_policy: { latest: { num_versions: 9 } }", [1, 2, 10]),
        ("version_policy: { all: {} }", [1, 2, 10]),
        ("version_policy: { specific: { versions: [1, 10, 7] } }", [1, 10]),
    ],
)
def test_version_policies(policy: str, expected: list[int]) -> None:
    config = parse_config_text(policy, "config.pbtxt")
    if not policy:
        config.version_policy.latest.num_versions = 1  # what normalization fills
    assert select_versions(config, [10, 2, 1]) == expected


def test_listing_finds_duplicates_across_repositories(repo: Repo, repo2: Repo) -> None:
    repo.add("a")
    repo.add("dup")
    repo2.add("dup")
    repo2.add("b")
    (repo.root / "README").write_text("plain files are not models")
    listing = list_repositories([repo.root, repo2.root])
    assert listing.names() == ["a", "b", "dup"]
    assert listing.duplicates == {"dup"}
    assert sorted(listing.models) == ["a", "b"]


def test_index_before_any_load(repo: Repo, repo2: Repo, tmp_path: Path) -> None:
    repo.add("zeta")
    repo.add("alpha")
    repo.add("dup")
    repo2.add("dup")
    manager = make_manager([repo.root, repo2.root])
    duplicate = {
        "name": "dup",
        "state": "UNAVAILABLE",
        "reason": "model appears in two or more repositories",
    }
    assert manager.index() == [{"name": "alpha"}, duplicate, {"name": "zeta"}]
    # Triton lists the duplicate even when only ready models are asked for.
    assert manager.index(ready_only=True) == [duplicate]
    assert not manager.server_ready()  # not started yet
