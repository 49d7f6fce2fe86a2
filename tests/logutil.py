"""Shared by the logging QA tests (test_qa_logging.py, test_qa_log_format.py): an
echo model's repository, servers started quietly on chosen ports, and the log lines
read back in either of Triton's formats."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import (
    RunningServer,
    free_ports,
    reference_command,
    run_reference,
    run_server,
    server_command,
    server_env,
)
from testmodels import ECHO_MODEL, write_model

ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
"""
DEFAULT_LINE = re.compile(r"^([IWE])\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ [^ ]+:\d+\] (.*)$")
ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ([IWE]) \d+ [^ ]+:\d+\] (.*)$")
FAKE = 'I0205 18:34:18.707423 1 file.cc:123] "THIS ENTRY WAS INJECTED"'


def build_repo(repo: Path) -> Path:
    write_model(repo, "echo", ECHO_CONFIG, ECHO_MODEL)
    return repo


@contextmanager
def quiet_server(kind: str, repo: Path, *args: str) -> Iterator[RunningServer]:
    """A server whose console may not name its ports (--log-file, --log-info
    false): started on chosen ports and waited for through readiness."""
    if kind == "reference":
        with run_reference([repo], *args) as server:
            yield server
        return
    ports = dict(zip(("http", "grpc", "metrics"), free_ports(3), strict=True))
    flags = [f"--{name}-port={port}" for name, port in ports.items()]
    with run_server(repo, *flags, *args, services=[]) as server:
        server.ports.update(ports)
        wait_until_ready(ports["http"])
        yield server


def wait_until_ready(http_port: int) -> None:
    """Waits for /v2/health/ready on ``http_port`` to answer 200."""

    def ready() -> bool:
        try:
            url = f"http://127.0.0.1:{http_port}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    wait_until(ready, "tritonx ready")


def infer_both(server: RunningServer) -> None:
    data = np.arange(4, dtype=np.float32)
    for module, url in ((httpclient, server.http_url), (grpcclient, server.grpc_url)):
        client = module.InferenceServerClient(url)
        inp = module.InferInput("INPUT0", [4], "FP32")
        inp.set_data_from_numpy(data)
        client.infer("echo", [inp])
        client.close()


def messages(text: str, levels: str = "IWE") -> list[str]:
    """The messages of the log lines of ``levels`` (either format)."""
    out = []
    for line in text.splitlines():
        match = DEFAULT_LINE.match(line) or ISO_LINE.match(line)
        if match and match.group(1) in levels:
            out.append(match.group(2))
    return out


def http_request(
    server: RunningServer, method: str, target: str, body: bytes | None = None
) -> tuple[int, bytes]:
    """One request on a connection of its own: the status and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        conn.request(method, target, body)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def post(server: RunningServer, path: str, body: bytes) -> tuple[int, Any]:
    status, answer = http_request(server, "POST", path, body)
    return status, json.loads(answer or b"null")


def run_until_it_gives_up(
    kind: str, repo: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Start a server of ``kind`` on ``repo``, whose model fails to load, and let
    it exit (exit-on-error): its exit status and both streams."""
    ports = free_ports(3)
    flags = [
        f"--model-repository={repo}",
        *args,
        f"--http-port={ports[0]}",
        f"--grpc-port={ports[1]}",
        f"--metrics-port={ports[2]}",
    ]
    if kind == "reference":
        cmd, env = [*(reference_command() or []), *flags], dict(os.environ)
    else:
        cmd, env = server_command([], flags), server_env()
    return subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def leveled_lines(text: str) -> list[tuple[str, str]]:
    """(level, message) of every default-format log line."""
    out = []
    for line in text.splitlines():
        match = DEFAULT_LINE.match(line)
        if match:
            out.append((match.group(1), match.group(2)))
    return out
