"""Model repository agents (config ``model_repository_agents``) through the wire.

The built-in ``checksum`` agent verifies files before a model loads; an agent name
tritonx does not have fails the load with Triton's message. Both fail at Triton's
poll stage: clients get "failed to load '<model>', failed to poll from model
repository" and the agent's message is in the log.

Differential against Triton 2.51 when TRITONX_REFERENCE_CMD is set. The reference
has no agents installed, so the unknown-agent cases always compare; the checksum
cases compare when TRITONX_REFERENCE_REPOAGENTS names a directory holding
``checksum/libtritonrepoagent_checksum.so`` built from
github.com/triton-inference-server/checksum_repository_agent (g++ -shared -fPIC
checksum.cc -lcrypto: scripts/build-reference-checksum-agent.sh); both servers are
then given that directory as --repoagent-directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import (
    RunningServer,
    client_inputs,
    differential,
    load_over_http,
    reference_command,
    run_either,
)
from testmodels import ADD_SUB, ADD_SUB_PY
from tritonclient.utils import InferenceServerException

REFERENCE_AGENTS_ENV = "TRITONX_REFERENCE_REPOAGENTS"
MD5 = hashlib.md5(ADD_SUB_PY.encode()).hexdigest()
# model name -> agents, each (name, [(key, value)]); every model is add_sub.
CHECKSUM_CASES: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {
    "good": [("checksum", [("MD5:1/model.py", MD5)])],
    "lower_algorithm": [("checksum", [("md5:1/model.py", MD5)])],
    "no_parameters": [("checksum", [])],
    "wrong": [("checksum", [("MD5:1/model.py", "0" * 32)])],
    "uppercase_digest": [("checksum", [("MD5:1/model.py", MD5.upper())])],
    "missing_file": [("checksum", [("MD5:1/nothere.py", MD5)])],
    "other_algorithm": [("checksum", [("SHA256:1/model.py", MD5)])],
    "no_algorithm": [("checksum", [("1/model.py", MD5)])],
    "then_unknown": [("checksum", [("MD5:1/model.py", MD5)]), ("nosuch", [])],
}
UNKNOWN_CASES: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {
    "unknown": [("nosuch", [])],
    "empty_name": [("", [])],
    "plain": [],
}
POLL_FAILED = re.compile(r"Poll failed for model directory '([^']*)': (.*?)\"?$")
A = np.arange(4, dtype=np.float32)
B = np.ones(4, dtype=np.float32)


def reference_agents() -> Path | None:
    value = os.environ.get(REFERENCE_AGENTS_ENV, "").strip()
    return Path(value) if value else None


def agents_text(agents: list[tuple[str, list[tuple[str, str]]]]) -> str:
    if not agents:
        return ""
    entries = []
    for name, params in agents:
        parts = " ".join(f'parameters {{ key: "{k}" value: "{v}" }}' for k, v in params)
        entries.append(f'{{ name: "{name}" {parts} }}')
    return f"model_repository_agents {{ agents [ {', '.join(entries)} ] }}\n"


def add_model(
    repo: Path,
    name: str,
    agents: list[tuple[str, list[tuple[str, str]]]],
    source: str = ADD_SUB_PY,
) -> Path:
    model = repo / name
    (model / "1").mkdir(parents=True, exist_ok=True)
    (model / "1" / "model.py").write_text(source)
    config = ADD_SUB.replace('name: "add_sub"', f'name: "{name}"')
    (model / "config.pbtxt").write_text(config + agents_text(agents))
    return model


def settings(root: Path) -> tuple[dict[str, Any], list[str]]:
    """The cases this run can compare and the --repoagent-directory both get."""
    directory = reference_agents()
    cases = dict(UNKNOWN_CASES)
    if directory is not None or reference_command() is None:
        cases.update(CHECKSUM_CASES)
    return cases, [f"--repoagent-directory={directory or root / 'agents'}"]


def scrub(text: str, root: Path, agents_flag: str) -> str:
    directory = agents_flag.split("=", 1)[1]
    return text.replace(directory, "<agents>").replace(str(root), "<root>")


def poll_failures(server: RunningServer) -> dict[str, str]:
    found = {}
    for line in server.log_text().splitlines():
        match = POLL_FAILED.search(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def grpc_load(server: RunningServer, name: str) -> Any:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.load_model(name)
        return "loaded"
    except InferenceServerException as error:
        return (error.status(), error.message())
    finally:
        client.close()


def infer(server: RunningServer, name: str) -> Any:
    client = httpclient.InferenceServerClient(server.http_url)
    inputs = client_inputs(httpclient, {"INPUT0": A, "INPUT1": B})
    try:
        result = client.infer(name, inputs)
    except InferenceServerException as error:
        return (error.status(), error.message())
    finally:
        client.close()
    return result.as_numpy("OUTPUT0").tolist()


def index(server: RunningServer) -> list[tuple[str, Any]]:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        rows = client.get_model_repository_index()
    finally:
        client.close()
    return [(r["name"], r.get("state"), r.get("reason")) for r in rows]


def test_explicit_loads(tmp_path: Path) -> None:
    cases, flags = settings(tmp_path)

    def scenario(kind: str) -> dict[str, Any]:
        repo = tmp_path / kind
        for name, agents in cases.items():
            add_model(repo, name, agents)
        with run_either(kind, repo, "--model-control-mode=explicit", *flags) as server:
            seen: dict[str, Any] = {n: load_over_http(server, n) for n in cases}
            grpc_names = [n for n in ("wrong", "unknown") if n in cases]
            seen["grpc"] = {n: grpc_load(server, n) for n in grpc_names}
            seen["infer"] = {n: infer(server, n) for n in cases}
            seen["index"] = index(server)
            seen["log"] = poll_failures(server)
            if "good" in cases:  # the agents stay in the served config
                client = httpclient.InferenceServerClient(server.http_url)
                config = client.get_model_config("good")
                client.close()
                seen["config"] = config["model_repository_agents"]
        return json.loads(scrub(json.dumps(seen), repo, flags[0]))

    seen = differential(scenario)
    poll_failed = "failed to load '{}', failed to poll from model repository"
    assert seen["unknown"] == [500, poll_failed.format("unknown")]
    assert seen["grpc"]["unknown"] == [
        "StatusCode.INTERNAL",
        poll_failed.format("unknown"),
    ]
    assert seen["log"]["unknown"] == (
        "unable to find 'libtritonrepoagent_nosuch.so' for repo agent 'nosuch', "
        "searched: <agents>"
    )
    assert seen["plain"] == [200, None]
    if "good" not in cases:
        return
    for name in ("good", "lower_algorithm", "no_parameters"):
        assert seen[name] == [200, None], name
        assert seen["infer"][name] == (A + B).tolist()
    assert seen["infer"]["wrong"][0] == "404"  # never loaded: unknown to clients
    assert seen["log"] == {
        "wrong": f"Mismatched MD5 hash for file 1/model.py, expect: {'0' * 32}, "
        f"got: {MD5}",
        "uppercase_digest": f"Mismatched MD5 hash for file 1/model.py, expect: "
        f"{MD5.upper()}, got: {MD5}",
        "missing_file": "failed to open text file for read 1/nothere.py: "
        "No such file or directory",
        "other_algorithm": "Unsupported checksum algorithm: SHA256",
        "no_algorithm": "failed to parse key: 1/model.py",
        "then_unknown": seen["log"]["unknown"],
        "unknown": seen["log"]["unknown"],
        "empty_name": "unable to find 'libtritonrepoagent_.so' for repo agent '', "
        "searched: <agents>",
    }


def test_startup_failures_leave_the_model_unloaded(tmp_path: Path) -> None:
    """Mode "none": a model whose agents fail is listed without a state (it was
    never loaded, as for an unreadable config); the others serve."""
    cases, flags = settings(tmp_path)
    wanted = ["plain", "unknown"] + (["good", "wrong"] if "good" in cases else [])

    def scenario(kind: str) -> dict[str, Any]:
        repo = tmp_path / kind
        for name in wanted:
            add_model(repo, name, cases[name])
        with run_either(kind, repo, "--exit-on-error=false", *flags) as server:
            seen = {
                "index": index(server),
                "log": poll_failures(server),
                "ready": [infer(server, n) for n in wanted],
            }
        return json.loads(scrub(json.dumps(seen), repo, flags[0]))

    seen = differential(scenario)
    states = {name: state for name, state, _ in seen["index"]}
    assert states["unknown"] is None and states["plain"] == "READY"
    if "good" in cases:
        assert states["wrong"] is None and states["good"] == "READY"


@pytest.mark.skipif(
    reference_command() is not None and reference_agents() is None,
    reason=f"the reference needs {REFERENCE_AGENTS_ENV} for checksum cases",
)
def test_poll_mode_keeps_the_old_version_when_a_checksum_fails(
    tmp_path: Path,
) -> None:
    """Poll mode: model.py changes so the checksum no longer matches; the reload
    fails and version 1 keeps serving the old code. Fixing the checksum in the
    config loads the new code."""
    _, flags = settings(tmp_path)
    changed = ADD_SUB_PY.replace("a + b", "a * b")
    changed_md5 = hashlib.md5(changed.encode()).hexdigest()

    def scenario(kind: str) -> dict[str, Any]:
        repo = tmp_path / kind
        model = add_model(repo, "guarded", [("checksum", [("MD5:1/model.py", MD5)])])
        seen: dict[str, Any] = {}
        with run_either(
            kind,
            repo,
            "--model-control-mode=poll",
            "--repository-poll-secs=1",
            *flags,
        ) as server:
            seen["first"] = infer(server, "guarded")
            # Triton reloads the model at its first poll rounds (model.py's import
            # wrote __pycache__); let those pass so the change below is the only
            # one.
            time.sleep(3)
            loads = server.log_text().count("successfully loaded 'guarded'")
            (model / "1" / "model.py").write_text(changed)
            bump_mtime(model / "1" / "model.py")
            wait_until(lambda: "guarded" in poll_failures(server), "poll failure")
            seen["failed reload"] = (infer(server, "guarded"), index(server))
            seen["log"] = poll_failures(server)
            config = (model / "config.pbtxt").read_text().replace(MD5, changed_md5)
            (model / "config.pbtxt").write_text(config)
            bump_mtime(model / "config.pbtxt")
            wait_until(
                lambda: (
                    server.log_text().count("successfully loaded 'guarded'") > loads
                ),
                "reload",
            )
            seen["fixed"] = (infer(server, "guarded"), index(server))
        return seen

    seen = differential(scenario)
    assert seen["first"] == (A + B).tolist()
    assert seen["failed reload"] == (
        (A + B).tolist(),
        [("guarded", "READY", None)],
    )
    assert seen["log"]["guarded"].startswith("Mismatched MD5 hash for file 1/model.py")
    assert seen["fixed"][0] == (A * B).tolist()


def bump_mtime(path: Path) -> None:
    """A later modification time than any the poll has seen (coarse clocks)."""
    later = time.time() + 2
    os.utime(path, (later, later))


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
