"""Fixtures of the poll-mode tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# --import-mode=importlib does not put this directory on sys.path.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from pollutil import PollRepo  # noqa: E402


@pytest.fixture
def poll_repo(tmp_path: Path) -> PollRepo:
    return PollRepo(tmp_path / "repo", tmp_path / "markers")
