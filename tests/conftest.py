"""Shared fixtures: the example repository and a writer for small test models."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# --import-mode=importlib does not put tests/ on sys.path; serverutil lives there.
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

EXAMPLE_REPO = TESTS.parent / "model_repository"

ModelWriter = Callable[..., Path]


@pytest.fixture
def example_repo() -> Path:
    return EXAMPLE_REPO


@pytest.fixture
def write_model(tmp_path: Path) -> ModelWriter:
    """write_model(name, config_pbtxt, model_py, repo=tmp_path/"repo") -> repo."""

    def write(name: str, config: str, model_py: str, repo: Path | None = None) -> Path:
        repo = repo or tmp_path / "repo"
        version = repo / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (repo / name / "config.pbtxt").write_text(textwrap.dedent(config))
        (version / "model.py").write_text(textwrap.dedent(model_py))
        return repo

    return write
