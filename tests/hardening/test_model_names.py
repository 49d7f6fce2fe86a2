"""Model names a load request may not use (Triton's L0_input_validation,
ModelNameValidationTest).

Triton's repository manager refuses, since March 2026, a load whose name is blank
or could step out of a repository, with INVALID_ARG; Triton 2.51 had no such check
(a load of ``..`` there read the repository's parent directory as a model) and
tritonx answered those names with an INTERNAL poll failure. The refusals are
checked against the newer Triton's texts here; what 2.51 and tritonx answer alike
(names that pass the check, unloads, non-explicit mode) is compared with the
reference when one is given.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import tritonclient.grpc as grpcclient
from serverutil import RunningServer, differential, run_either, run_server
from testmodels import ECHO_FP32_CONFIG, ECHO_MODEL, write_model
from tritonclient.utils import InferenceServerException

# The QA test's names that could leave the repository.
TRAVERSAL_NAMES = [
    "../etc", "a/../b", "../../etc/passwd", "../../../../etc", "model/..", "..",
    "/etc/passwd", "model/subdir", "model/", " ..", ".. ", "../outside",
]  # fmt: skip
# Blank once trimmed of C++'s white space.
BLANK_NAMES = ["", " ", "   ", "\t", "\n", "\r", "\f", "\v", " \t \n "]
# Names that pass the check and then are looked up (none exists here).
UNKNOWN_NAMES = ["model123", "model.version1", "...", "..my_model", "model..1"]

EMPTY = "Model name cannot be empty. Please enter a valid name to deploy."


def traversal(name: str) -> str:
    return (
        f"invalid model name '{name}', model name must not contain path traversal "
        "characters"
    )


def poll_failure(name: str) -> str:
    return f"failed to load '{name}', failed to poll from model repository"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<base>/repo holding `echo`, and a valid model `outside` beside the
    repository, which no load may reach."""
    base = tmp_path_factory.mktemp("names")
    write_model(base / "repo", "echo", ECHO_FP32_CONFIG, ECHO_MODEL)
    write_model(
        base, "outside", ECHO_FP32_CONFIG.replace('"echo"', '"outside"'), ECHO_MODEL
    )
    return base


@pytest.fixture(scope="module")
def server(layout: Path) -> Iterator[RunningServer]:
    with run_server(layout / "repo", "--model-control-mode=explicit") as running:
        yield running


def grpc_call(server: RunningServer, action: str, name: str) -> tuple[str, str]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        getattr(client, action)(name)
    except InferenceServerException as error:
        return str(error.status()), error.message()
    finally:
        client.close()
    return "OK", ""


def http_call(server: RunningServer, action: str, name: str) -> tuple[int, str]:
    """POST .../<name>/<action> with every character of the name escaped ('/' too,
    which tritonclient leaves as is), so each name reaches the server's check."""
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        conn.request("POST", f"/v2/repository/models/{quote(name, safe='')}/{action}")
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body or b"{}").get("error", "")
    finally:
        conn.close()


@pytest.mark.parametrize("name", TRAVERSAL_NAMES)
def test_a_name_that_could_leave_the_repository_is_refused(
    server: RunningServer, name: str
) -> None:
    assert grpc_call(server, "load_model", name) == (
        "StatusCode.INVALID_ARGUMENT",
        traversal(name),
    )
    assert http_call(server, "load", name) == (400, traversal(name))


@pytest.mark.parametrize("name", BLANK_NAMES)
def test_a_blank_name_is_refused(server: RunningServer, name: str) -> None:
    assert grpc_call(server, "load_model", name) == (
        "StatusCode.INVALID_ARGUMENT",
        EMPTY,
    )
    if name:  # an empty name leaves no path segment: no route (404)
        assert http_call(server, "load", name) == (400, EMPTY)


def test_nothing_outside_the_repository_was_loaded(server: RunningServer) -> None:
    for name in TRAVERSAL_NAMES:
        grpc_call(server, "load_model", name)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        index = client.get_model_repository_index(as_json=True).get("models", [])
    finally:
        client.close()
    assert [model["name"] for model in index] == ["echo"]


def test_a_proper_load_still_works(server: RunningServer) -> None:
    assert grpc_call(server, "load_model", "echo") == ("OK", "")
    assert http_call(server, "load", "echo") == (200, "")


def _unchecked_answers(kind: str, repo: Path, *flags: str) -> dict[str, Any]:
    """Answers that do not depend on the name check: unknown names that pass it,
    and unloads of any name (never checked)."""
    seen: dict[str, Any] = {}
    with run_either(kind, repo, *flags) as running:
        for name in UNKNOWN_NAMES:
            seen[f"grpc load {name!r}"] = grpc_call(running, "load_model", name)
            seen[f"http load {name!r}"] = http_call(running, "load", name)
        for name in TRAVERSAL_NAMES + BLANK_NAMES[1:]:
            seen[f"grpc unload {name!r}"] = grpc_call(running, "unload_model", name)
    return seen


def test_names_that_pass_the_check_are_looked_up_as_in_triton(layout: Path) -> None:
    seen = differential(
        lambda kind: _unchecked_answers(
            kind, layout / "repo", "--model-control-mode=explicit"
        )
    )
    for name in UNKNOWN_NAMES:
        assert seen[f"grpc load {name!r}"] == (
            "StatusCode.INTERNAL",
            poll_failure(name),
        )
        assert seen[f"http load {name!r}"] == (500, poll_failure(name))
    assert {seen[f"grpc unload {name!r}"] for name in TRAVERSAL_NAMES} == {("OK", "")}


def _loads_outside_explicit_mode(kind: str, repo: Path) -> dict[str, Any]:
    with run_either(kind, repo) as running:
        return {
            name: grpc_call(running, "load_model", name) for name in ("..", "", "a/b")
        }


def test_outside_explicit_mode_the_mode_is_refused_first(layout: Path) -> None:
    """Triton checks the control mode before the name."""
    seen = differential(
        lambda kind: _loads_outside_explicit_mode(kind, layout / "repo")
    )
    assert set(seen.values()) == {
        (
            "StatusCode.UNAVAILABLE",
            "explicit model load / unload is not allowed if polling is enabled",
        )
    }
