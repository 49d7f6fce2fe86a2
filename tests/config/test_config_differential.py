"""Model configs loaded by tritonx and by Triton 2.51: the same answers.

What a user meets of the config code is the error of a failed load (HTTP
``POST /v2/repository/models/NAME/load``) and the config Triton serves once the
model is loaded (``GET /v2/models/NAME/config``, defaults and auto-complete filled
in). Every case of config_cases*.py is a Python-backend model in one repository,
served by one tritonx and one Triton in EXPLICIT mode; each case is loaded on both
and must give the same observation (config_diff.observe): the load's status, then
the config JSON and the model metadata, or the error and the repository index's
entries for the model. Messages are compared after two normalisations only: the
repository path, and traceback frames of files outside the repository.

A second pair of servers, started with ``--disable-auto-complete-config``, loads
the cases auto-complete could change. The comparisons run only when
``TRITONX_REFERENCE_CMD`` names the real Triton. The cases Triton cannot answer (it
hangs or crashes) are not sent to it: their tritonx answers are pinned in
``NOT_SENT`` and checked with or without the reference. The few deliberate
differences are in ``DIFFERENT``, each with its reason and tritonx's pinned answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from config_cases import CASES_PART1
from config_cases_more import CASES_PART2
from config_diff import observe, observe_both, write_repository
from serverutil import RunningServer, reference_command, run_reference, run_server

CASES = CASES_PART1 + CASES_PART2
EXPLICIT = "--model-control-mode=explicit"


class Pinned(NamedTuple):
    """Why a case is not compared with Triton, and tritonx's answer to it."""

    reason: str
    load: int
    error: str | None  # None: the load succeeds


def _failed(name: str, version: int, error: str) -> str:
    return (
        f"load failed for model '{name}': version {version} is at UNAVAILABLE "
        f"state: {error};\n"
    )


def _missing_file(name: str, file: str) -> Pinned:
    return Pinned(
        "Triton's Python stub fails to start and Triton waits for it forever (no "
        "answer to the load within minutes)",
        400,
        _failed(
            name,
            1,
            f"Internal: Failed to load model file '<repo>/{name}/1/{file}': file "
            "does not exist",
        ),
    )


# Not sent to Triton: it cannot answer them.
NOT_SENT: dict[str, Pinned] = {
    "version_dir_no_model_py": _missing_file("version_dir_no_model_py", "model.py"),
    "default_model_filename_missing": _missing_file(
        "default_model_filename_missing", "nope.py"
    ),
    # tritonx gathers the model's errors as Triton's warmup code would have.
    "warmup_execute_raises": Pinned(
        "Triton crashes (SIGSEGV) when its model answers a warmup request with an "
        "error",
        400,
        _failed(
            "warmup_execute_raises",
            1,
            "Invalid argument: failed to run warmup sample 'w': no warmup; ",
        ),
    ),
    # The sample's 8 requests of batch 1 go to a model without batching, which
    # tritonx runs as 8 requests.
    "warmup_batch_unbatched": Pinned(
        "Triton crashes (SIGSEGV) running a warmup sample whose batch_size is over "
        "1 for a model with max_batch_size 0",
        200,
        None,
    ),
}

# Sent to both, answered differently on purpose.
DIFFERENT: dict[str, Pinned] = {
    name: Pinned(
        f"Triton loads a model with two {kind}s named alike (the config and the "
        "metadata list both), which no request can then use (one 'I' is 'expected 2 "
        "inputs but got 1', two are 'input 'I' already exists in request'); "
        "tritonx refuses it (config.checks.check_supported)",
        400,
        _failed(
            name,
            1,
            f"Invalid argument: model {kind} '{tensor}' is specified more than "
            f"once for {name}",
        ),
    )
    for name, kind, tensor in (
        ("dup_input", "input", "I"),
        ("dup_output", "output", "O"),
    )
}


# The reference Triton now and then dies of SIGSEGV on a loaded two-core machine, in
# a case that passes on a fresh one (seen in a full local run: every later case of
# the module then failed behind it). A crashed reference is replaced and the case
# that met the crash runs again (once). Past this many replacements per server pair
# the remaining cases are skipped: there is nothing left to compare with (CI once
# saw three crashes in one module run; each replacement costs a second or two).
MAX_REFERENCE_RESTARTS = 8


class Reference:
    """The reference Triton of a server pair, replaced when it crashed."""

    def __init__(self, stack: ExitStack, repo: Path, args: tuple[str, ...]) -> None:
        self._stack = stack
        self._repo = repo
        self._args = args
        self.restarts = 0
        self.server = self._start()

    def _start(self) -> RunningServer:
        return self._stack.enter_context(
            run_reference([self._repo], EXPLICIT, *self._args)
        )

    def crashed(self) -> bool:
        code = self.server.process.poll()
        return code is not None and code < 0  # ended by a signal

    def replace(self) -> None:
        if self.restarts >= MAX_REFERENCE_RESTARTS:
            pytest.skip(
                f"the reference Triton crashed {self.restarts + 1} times; the end "
                f"of its last log:\n{self.server.log_text()[-3000:]}"
            )
        self.restarts += 1
        self.server = self._start()


Observed = tuple[dict[str, Any], dict[str, Any]]


@dataclass
class Servers:
    repo: Path
    ours: RunningServer
    reference: Reference | None
    # Cases observed ahead on both servers (observe_ahead), taken by their tests.
    ahead: dict[str, Observed] = field(default_factory=dict)


# Cases observed at once on each server by observe_ahead: a case's time is mostly
# Triton's Python stub starting (~1.5 s) and stopping (~1 s per instance), which
# overlap across models; one case at a time took 5 minutes for the module.
CASES_AT_ONCE = 4
# observe_ahead runs in the first test's setup, which the timeout covers: 80 s on
# a quiet CI runner, 174 s on a loaded one (seen), against the default 300.
pytestmark = pytest.mark.timeout(900)


def observe_ahead(servers: Servers, names: list[str]) -> None:
    """Observes ``names`` on both servers, CASES_AT_ONCE cases at a time, into
    ``servers.ahead``. A case that raised is left out: its test observes it again
    alone (replacing a crashed reference), where the error is reported."""
    reference = servers.reference
    if reference is None:
        return

    def both(name: str) -> Observed:
        return observe_both(servers.ours, reference.server, servers.repo, name)

    with ThreadPoolExecutor(max_workers=CASES_AT_ONCE) as pool:
        futures = {name: pool.submit(both, name) for name in names}
        for name, future in futures.items():
            if future.exception() is None:
                servers.ahead[name] = future.result()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("config_differential") / "repo"
    write_repository(root, CASES)
    return root


@contextmanager
def server_pair(repo: Path, *args: str) -> Iterator[Servers]:
    """tritonx and (when a reference command is given) Triton 2.51 on ``repo`` in
    explicit mode."""
    with ExitStack() as stack:
        ours = stack.enter_context(run_server(repo, EXPLICIT, *args))
        reference = None
        if reference_command() is not None:
            reference = Reference(stack, repo, args)
        yield Servers(repo, ours, reference)


def _selected(request: pytest.FixtureRequest, test: str) -> list[str]:
    """The cases of this module's ``test`` that this run selected."""
    module = Path(__file__).name
    return [
        item.callspec.params["name"]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.originalname == test
        and item.path.name == module
    ]


@pytest.fixture(scope="module")
def servers(repo: Path, request: pytest.FixtureRequest) -> Iterator[Servers]:
    with server_pair(repo) as both:
        observe_ahead(both, _selected(request, "test_same_as_triton"))
        yield both


@pytest.fixture(scope="module")
def servers_no_auto_complete(
    repo: Path, request: pytest.FixtureRequest
) -> Iterator[Servers]:
    with server_pair(repo, "--disable-auto-complete-config") as both:
        selected = _selected(request, "test_same_as_triton_without_auto_complete")
        observe_ahead(both, selected)
        yield both


def observe_pair(
    servers: Servers, name: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """tritonx's observation of ``name``, and Triton's when it runs (a crashed
    reference is replaced and the case run again once)."""
    reference = servers.reference
    if reference is None:
        return observe(servers.ours, servers.repo, name), None
    if reference.crashed():
        reference.replace()
    try:
        return observe_both(servers.ours, reference.server, servers.repo, name)
    except Exception:
        if not reference.crashed():
            raise
        reference.replace()
        return observe_both(servers.ours, reference.server, servers.repo, name)


def _alive(server: RunningServer) -> RunningServer:
    """``server``, failing the test with the end of its log if it has exited."""
    code = server.process.poll()
    assert code is None, f"server exited ({code}):\n{server.log_text()[-3000:]}"
    return server


def _answer(seen: dict[str, Any]) -> tuple[int, str | None]:
    return seen["load"], seen.get("error")


COMPARED = [case.name for case in CASES if case.name not in NOT_SENT]


def _observe_alone(servers: Servers, reference: Reference, name: str) -> Observed:
    if reference.crashed():
        reference.replace()
    try:
        return observe_both(_alive(servers.ours), reference.server, servers.repo, name)
    except Exception:
        if not reference.crashed():
            raise
        reference.replace()
        return observe_both(_alive(servers.ours), reference.server, servers.repo, name)


def _compare(servers: Servers, name: str) -> None:
    reference = servers.reference
    if reference is None:
        pytest.skip("TRITONX_REFERENCE_CMD is not set")
    if name in servers.ahead:
        ours, theirs = servers.ahead.pop(name)
        _alive(servers.ours)
    else:
        ours, theirs = _observe_alone(servers, reference, name)
        _alive(reference.server)  # a case that crashes Triton fails here
    if name in DIFFERENT:
        pinned = DIFFERENT[name]
        assert _answer(ours) == (pinned.load, pinned.error)
        assert theirs["load"] == 200, "Triton now refuses it too: drop the entry"
        return
    assert ours == theirs


@pytest.mark.parametrize("name", COMPARED)
def test_same_as_triton(servers: Servers, name: str) -> None:
    _compare(servers, name)


# The cases whose outcome auto-complete could change: without it the Python
# backend never asks the model, and Triton fills in no tensors or batching.
WITHOUT_AUTO_COMPLETE = [
    "ok_minimal",
    "no_config",
    "empty_config",
    "only_backend",
    "auto_complete_fn",
    "auto_complete_conflict",
    "no_tensors",
    "no_outputs",
    "backend_empty_with_py",
    "platform_python_only",
    "mbs_8",
    "mbs_8_db",
    "sb_empty",
    "ig_count_zero",
    "decoupled",
]


assert {*NOT_SENT, *DIFFERENT, *WITHOUT_AUTO_COMPLETE} <= {c.name for c in CASES}


@pytest.mark.parametrize("name", WITHOUT_AUTO_COMPLETE)
def test_same_as_triton_without_auto_complete(
    servers_no_auto_complete: Servers, name: str
) -> None:
    _compare(servers_no_auto_complete, name)


@pytest.mark.parametrize("name", sorted(NOT_SENT))
def test_not_sent_to_triton(servers: Servers, name: str) -> None:
    pinned = NOT_SENT[name]
    seen = observe(_alive(servers.ours), servers.repo, name)
    assert _answer(seen) == (pinned.load, pinned.error)
