"""Shared fixtures: the example repository and a writer for small test models."""

from __future__ import annotations

import faulthandler
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


# pytest-timeout's thread method (pyproject) ends the whole worker when a test
# outlives its timeout, since a test blocked inside C++ cannot be interrupted, and
# the dump it writes is lost with the worker's stderr. The loadfile scheduler then
# gives that file, the hung test included, to a fresh worker, which would hang the
# same way, up to 4 workers per core. So each running test has a marker file here
# (one test runs on one worker at a time) into which faulthandler writes every
# thread's stack shortly before the timeout; a marker found when a test starts
# means the test ended a worker: it fails at once, with those stacks.
RUNNING_DIR_ENV = "TRITONX_TEST_RUNNING_DIR"
_HUNG_STACKS = pytest.StashKey[str]()


def _running_marker(item: pytest.Item) -> Path | None:
    directory = os.environ.get(RUNNING_DIR_ENV)
    if not directory:
        return None
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in item.nodeid)
    return Path(directory) / name[-200:]


def _timeout_s(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    marker = _running_marker(item)
    timeout = _timeout_s(item)
    if marker is None or timeout <= 0:
        yield
        return
    if marker.exists():
        item.stash[_HUNG_STACKS] = marker.read_text(errors="replace")
    with marker.open("w") as stacks:
        faulthandler.dump_traceback_later(max(timeout - 5, timeout / 2), file=stacks)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
    marker.unlink(missing_ok=True)


_CRASHES_AT_START = pytest.StashKey[int]()


def _reference_crash(item: pytest.Item) -> str | None:
    """The line with which a reference Triton reported its crash during ``item``,
    or before it for a reference server among its fixtures (serverutil)."""
    import serverutil

    seen = serverutil.reference_crashes[item.stash.get(_CRASHES_AT_START, 0) :]
    if seen:
        return seen[0]
    for value in getattr(item, "funcargs", {}).values():
        for candidate in value if isinstance(value, tuple) else (value,):
            running = isinstance(candidate, serverutil.RunningServer)
            if running and _crashed_by_now(candidate):
                return "its server had crashed before"
    return None


def _reference_stub_failure(item: pytest.Item, report: pytest.TestReport) -> str | None:
    """The reference's stub failing its health check under load (see
    serverutil.REFERENCE_STUB_UNHEALTHY) in a test whose only servers among its
    fixtures are references: their failure cannot be tritonx's."""
    import serverutil

    servers = [
        candidate
        for value in getattr(item, "funcargs", {}).values()
        for candidate in (value if isinstance(value, tuple) else (value,))
        if isinstance(candidate, serverutil.RunningServer)
    ]
    if not servers or not all(server.reference for server in servers):
        return None
    found = serverutil.REFERENCE_STUB_UNHEALTHY.search(report.longreprtext)
    return f"its stub failed under load: {found.group(0)}" if found else None


def _crashed_by_now(server: Any) -> bool:
    """Whether ``server`` is a reference that crashed. A crash fails the test as
    the connection drops, which can be before the reader thread has passed the
    crash's line on: a reference that is gone gets a moment for it."""
    if not server.reference:
        return False
    try:
        server.process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        return server.crashed_reference()
    deadline = time.monotonic() + 2
    while not server.crashed_reference() and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.crashed_reference()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    """A test that failed because the reference Triton crashed under it (or, where
    only references serve it, its stub failed) is skipped:
    there was nothing to compare with (tritonx's own answers are checked elsewhere
    in the test, before or without the reference)."""
    outcome: Any = yield
    report = outcome.get_result()
    if item.get_closest_marker("replaces_crashed_reference") is not None:
        return
    if report.failed and call.when in ("setup", "call"):
        crash = _reference_crash(item) or _reference_stub_failure(item, report)
        if crash is not None:
            report.outcome = "skipped"
            report.longrepr = (
                str(item.path),
                item.location[1] or 0,
                f"Skipped: the reference Triton failed ({crash})",
            )


def pytest_runtest_setup(item: pytest.Item) -> None:
    import serverutil

    item.stash[_CRASHES_AT_START] = len(serverutil.reference_crashes)
    stacks = item.stash.get(_HUNG_STACKS, None)
    if stacks is not None:
        pytest.fail(
            "this test outlived its timeout and ended its worker; not run again. "
            f"Its threads shortly before the timeout:\n{stacks}",
            pytrace=False,
        )


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the main process did it
        return
    if config.pluginmanager.hasplugin("xdist") and not os.environ.get(RUNNING_DIR_ENV):
        directory = tempfile.mkdtemp(prefix="tritonx-running-")
        os.environ[RUNNING_DIR_ENV] = directory
        config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))
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
