"""Fixtures for the ModelManager tests (helpers live in repo_helpers)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# --import-mode=importlib does not put this directory on sys.path.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# Shared scenarios assert in their own module: rewritten like a test's asserts.
pytest.register_assert_rewrite("cloud_scenarios")

from repo_helpers import Repo  # noqa: E402


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = tmp_path / "repo"
    log_dir = tmp_path / "log"
    root.mkdir()
    log_dir.mkdir()
    return Repo(root, log_dir)


@pytest.fixture
def repo2(tmp_path: Path) -> Repo:
    root = tmp_path / "repo2"
    root.mkdir()
    return Repo(root, tmp_path / "log")
