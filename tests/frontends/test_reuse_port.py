"""--reuse-http-port / --reuse-grpc-port: with the flag, several servers listen on one
port (SO_REUSEPORT, for a load-balanced group on one host); without it a second
server on a taken port fails to start. Through the wire, against the real Triton
2.51 when TRITONX_REFERENCE_CMD is set."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cloudutil import launch_command
from serverutil import free_ports, reference_command, server_env
from testmodels import ADD_SUB, ADD_SUB_PY


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reuse")
    (root / "add_sub" / "1").mkdir(parents=True)
    (root / "add_sub" / "config.pbtxt").write_text(ADD_SUB)
    (root / "add_sub" / "1" / "model.py").write_text(ADD_SUB_PY)
    return root


def _ready(protocol: str, port: int) -> bool:
    url = f"127.0.0.1:{port}"
    try:
        if protocol == "http":
            return bool(httpclient.InferenceServerClient(url).is_server_ready())
        if protocol == "grpc":
            return bool(grpcclient.InferenceServerClient(url).is_server_ready())
        with urllib.request.urlopen(f"http://{url}/metrics", timeout=5) as reply:
            return bool(reply.status == 200)
    except Exception:
        return False


def _command(
    kind: str, repo: Path, ports: dict[str, int], reuse: str, *extra: str
) -> list[str]:
    return [
        *launch_command(kind),
        f"--model-repository={repo}",
        *(f"--{name}-port={port}" for name, port in ports.items()),
        f"--reuse-http-port={reuse}",
        f"--reuse-grpc-port={reuse}",
        *extra,
    ]


@contextmanager
def server(
    kind: str, repo: Path, ports: dict[str, int], reuse: str, probe: str
) -> Iterator[None]:
    """A server on ``ports`` until the block exits; ready once ``probe`` (a
    protocol whose port is its own) answers ready."""
    process = subprocess.Popen(
        _command(kind, repo, ports, reuse),
        env=server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not _ready(probe, ports[probe]):
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


def _refused(
    kind: str, repo: Path, ports: dict[str, int], *extra: str
) -> dict[str, Any]:
    """Exit code and last line of a server that must fail to start."""
    with tempfile.TemporaryFile("w+") as log:
        # A file, not a pipe: Triton's python stub processes may hold a pipe open
        # after the server itself has exited.
        code = subprocess.run(
            _command(kind, repo, ports, "false", *extra),
            env=server_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
        ).returncode
        log.seek(0)
        last = log.read().strip().splitlines()[-1]
    message = last[last.index("failed to start") :].removesuffix('"')
    return {"exit": code, "message": re.sub(r"[0-9.]+:\d+", "<address>", message)}


def observe(kind: str, repo: Path) -> dict[str, Any]:
    http, grpc, *metrics = free_ports(8)
    shared = {"http": http, "grpc": grpc}
    seen: dict[str, Any] = {}
    with ExitStack() as stack:
        for index in range(2):
            ports = {**shared, "metrics": metrics[index]}
            # Ready once its own (metrics) port answers: the shared ones are bound.
            stack.enter_context(server(kind, repo, ports, "true", "metrics"))
        seen["both started, shared ports ready"] = (
            _ready("http", http),
            _ready("grpc", grpc),
        )
    with server(kind, repo, {**shared, "metrics": metrics[2]}, "false", "metrics"):
        for protocol, port in shared.items():
            own = dict(zip(("http", "grpc", "metrics"), metrics[3:6], strict=True))
            seen[f"{protocol} taken"] = _refused(kind, repo, {**own, protocol: port})
    return seen


def test_reuse_port(repo: Path) -> None:
    seen = observe("tritonx", repo)
    assert seen["both started, shared ports ready"] == (True, True)
    for protocol in ("http", "grpc"):
        assert seen[f"{protocol} taken"] == {
            "exit": 1,
            "message": f"failed to start {protocol.upper()} service: Unavailable - "
            "Socket '<address>' already in use ",
        }
    if reference_command() is not None:
        assert seen == observe("reference", repo)


def test_python_http_engine_names_the_taken_port_alike(repo: Path) -> None:
    """The asyncio HTTP engine (--http-engine=python) words a taken port as the
    native one and tritonserver do."""
    import socket

    http, grpc, metrics = free_ports(3)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", http))
        taken.listen()
        seen = _refused(
            "tritonx",
            repo,
            {"http": http, "grpc": grpc, "metrics": metrics},
            "--http-engine=python",
        )
    assert seen == {
        "exit": 1,
        "message": "failed to start HTTP service: Unavailable - "
        "Socket '<address>' already in use ",
    }
