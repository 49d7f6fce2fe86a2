"""A log sink the server cannot write, or that does not keep up: it keeps serving,
says so once, and picks up again when the sink takes entries again.

Python's logging prints a traceback per entry to stderr when a write fails (a full
disk: 25 lines per entry, several entries per request at --log-verbose); Triton
2.51 drops the entries silently. tritonx drops them too, reports the first failure
once on stderr, and when writing works again the log first says how many entries
were lost. The full disk is /dev/full (every write: ENOSPC); the sink that comes
back is a named pipe whose reader goes away (EPIPE) and returns, like a log shipper
that restarts. The sink that blocks is the server's own stdout and stderr, a pipe
nobody reads (Docker's blocking log driver behind a slow remote): every request that
logged used to wait on it, so ~150 failed executions filled the pipe and the server
stopped answering (Triton 2.51 too); now entries beyond a bounded queue are dropped.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import tritonclient.http as httpclient
from grpcutil import wait_until
from logutil import (
    build_repo,
    infer_both,
    messages,
    quiet_server,
    wait_until_ready,
)
from serverutil import free_ports, server_command, server_env, terminate
from testmodels import ECHO_FP32_CONFIG, write_model

ARGS = ("--log-verbose=1", "--model-control-mode=explicit", "--load-model=echo")


def test_full_disk(tmp_path: Path) -> None:
    with quiet_server(
        "tritonx", build_repo(tmp_path / "repo"), "--log-file=/dev/full", *ARGS
    ) as server:
        for _ in range(3):
            infer_both(server)
        wait_until(lambda: "cannot write the log" in server.log_text(), "report")
        console = server.log_text()
    assert console.count("tritonx: cannot write the log to /dev/full:") == 1, console
    assert "No space left on device" in console
    assert "Traceback" not in console and "Logging error" not in console, console


class _PipeReader:
    """Reads a named pipe on a thread until closed; what it read in ``text``."""

    def __init__(self, path: Path) -> None:
        # Non-blocking: the open does not wait for a writer, and the thread can stop
        # (a read blocked in the kernel would keep the pipe's read end alive).
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.text = ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            readable, _, _ = select.select([self.fd], [], [], 0.05)
            if not readable:
                continue
            chunk = os.read(self.fd, 65536)
            if chunk:
                self.text += chunk.decode()
            else:
                self.stop.wait(0.05)  # no writer (yet): nothing to read

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        os.close(self.fd)


def test_log_pipe_reader_goes_away_and_returns(tmp_path: Path) -> None:
    fifo = tmp_path / "log.pipe"
    os.mkfifo(fifo)
    first = _PipeReader(fifo)
    with quiet_server(
        "tritonx", build_repo(tmp_path / "repo"), f"--log-file={fifo}", *ARGS
    ) as server:
        infer_both(server)
        wait_until(lambda: "successfully loaded 'echo'" in first.text, "log lines")
        first.close()
        # Entries written with no reader fail (EPIPE) and are dropped.
        for _ in range(2):
            infer_both(server)
        wait_until(lambda: "cannot write the log" in server.log_text(), "report")
        second = _PipeReader(fifo)
        try:
            client = httpclient.InferenceServerClient(server.http_url)
            client.unload_model("echo")
            wait_until(
                lambda: "successfully unloaded 'echo'" in second.text, "log resumes"
            )
            client.close()
        finally:
            second.close()
        console = server.log_text()
    assert console.count(f"tritonx: cannot write the log to {fifo}:") == 1, console
    assert "Broken pipe" in console and "Traceback" not in console, console
    resumed = messages(second.text)
    dropped = [m for m in resumed if "log entries were dropped" in m]
    assert len(dropped) == 1 and resumed.index(dropped[0]) == 0, resumed
    assert int(dropped[0].strip('"').split()[0]) > 0, dropped


# Every execution fails, and Triton's python backend (and tritonx) logs an error for
# each: a log line per request at the default log level.
FAILING_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        raise pb_utils.TritonModelException("failing on purpose " + "x" * 300)
"""


def _post_infer(port: int) -> int:
    body = {
        "inputs": [{"name": "INPUT0", "shape": [2], "datatype": "FP32", "data": [1, 2]}]
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/echo/infer", json.dumps(body).encode()
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_console_nobody_reads(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "echo", ECHO_FP32_CONFIG, FAILING_MODEL)
    ports = free_ports(3)
    flags = [
        f"--{k}-port={p}"
        for k, p in zip(("http", "grpc", "metrics"), ports, strict=True)
    ]
    # stdout and stderr: one pipe, read only at the end (64 KiB fill it).
    process = subprocess.Popen(
        server_command([repo], flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=server_env(),
    )
    try:
        wait_until_ready(ports[0])
        # 3,000 error lines of ~470 bytes: more than the pipe and the queue hold.
        statuses = {_post_infer(ports[0]) for _ in range(3000)}
        assert statuses == {500}, statuses
        # Now read the console: the log picks up again and counts what it lost.
        chunks: list[bytes] = []
        assert process.stdout is not None
        stdout = process.stdout
        reader = threading.Thread(target=lambda: chunks.append(stdout.read()))
        reader.start()
        _post_infer(ports[0])
    finally:
        # Exits on its own, the console still full or not (it used to hang).
        terminate(process)
    reader.join(timeout=60)
    console = b"".join(chunks).decode()
    assert process.returncode == 0, console[-3000:]
    dropped = [m for m in messages(console) if "log entries were dropped" in m]
    assert len(dropped) >= 1, console[-3000:]
    assert "Traceback" not in console
