"""Shared fixtures: the example repository and a writer for small test models."""

from __future__ import annotations

import os
import shlex
import subprocess
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

# Tools named by environment variable that install themselves on first use (the
# reference Triton, perf_analyzer): run once here, in the main process, before
# pytest-xdist starts its workers, so that two workers never install at once.
SELF_INSTALLING_TOOLS = ("TRITONX_REFERENCE_CMD", "PERF_ANALYZER")


# Files that take minutes, handed out first: pytest-xdist gives files to workers in
# collection order, and one of these at the end would run on after the rest.
SLOW_FILES = (
    "packaging/test_wheel.py",
    "ensemble/test_ensemble_reference.py",
    "repository/test_namespacing.py",
    "stub/test_stub_process.py",
    "pollmode/test_poll_reference.py",
    "frontends/test_sagemaker.py",
    "tools/test_analyze.py",
    "config/test_config_differential.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        try:
            path = item.path.relative_to(TESTS).as_posix()
        except ValueError:
            return len(SLOW_FILES)
        return SLOW_FILES.index(path) if path in SLOW_FILES else len(SLOW_FILES)

    items.sort(key=rank)  # stable: each file keeps its own order


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the main process did it
        return
    for variable in SELF_INSTALLING_TOOLS:
        command = shlex.split(os.environ.get(variable, ""))
        if command:
            # --help only prints usage once the tool is installed; its exit code
            # and output do not matter, the tests that use the tool check it.
            subprocess.run(
                [*command, "--help"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=900,
                check=False,
            )


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
