"""--reuse-http-port / --reuse-grpc-port: with the flag, several servers listen on one
port (SO_REUSEPORT, for a load-balanced group on one host); without it a second
server on a taken port fails to start. Through the wire, against the real Triton
2.51 when TRITONX_REFERENCE_CMD is set."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
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

OTHER = {"http": "grpc", "grpc": "http"}


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
        return bool(grpcclient.InferenceServerClient(url).is_server_ready())
    except Exception:
        return False


def _command(kind: str, repo: Path, ports: dict[str, int], reuse: str) -> list[str]:
    return [
        *launch_command(kind),
        f"--model-repository={repo}",
        *(f"--{name}-port={port}" for name, port in ports.items()),
        f"--reuse-http-port={reuse}",
        f"--reuse-grpc-port={reuse}",
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


def observe(kind: str, repo: Path, protocol: str) -> dict[str, Any]:
    shared, *own = free_ports(7)
    names = ("http", "grpc", "metrics")
    first = {**dict(zip(names, own[:3], strict=True)), protocol: shared}
    second = {**dict(zip(names, own[3:6], strict=True)), protocol: shared}
    seen: dict[str, Any] = {}
    with ExitStack() as stack:
        stack.enter_context(server(kind, repo, first, "true", OTHER[protocol]))
        # Ready on its own other port: it bound the shared one too.
        stack.enter_context(server(kind, repo, second, "true", OTHER[protocol]))
        seen["both started, shared port ready"] = _ready(protocol, shared)
    with (
        server(kind, repo, first, "false", OTHER[protocol]),
        tempfile.TemporaryFile("w+") as log,
    ):
        # A file, not a pipe: Triton's python stub processes may hold a pipe open
        # after the server itself has exited.
        seen["second without the flag"] = subprocess.run(
            _command(kind, repo, second, "false"),
            env=server_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
        ).returncode
        log.seek(0)
        last = log.read().strip().splitlines()[-1]
    message = last[last.index("failed to start") :].removesuffix('"')
    seen["message"] = re.sub(r"[0-9.]+:\d+", "<address>", message)
    return seen


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_reuse_port(repo: Path, protocol: str) -> None:
    seen = observe("tritonx", repo, protocol)
    assert seen["both started, shared port ready"] is True
    assert seen["second without the flag"] == 1
    assert seen["message"] == (
        f"failed to start {protocol.upper()} service: Unavailable - Socket "
        "'<address>' already in use "
    )
    if reference_command() is not None:
        assert seen == observe("reference", repo, protocol)
