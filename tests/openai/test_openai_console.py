"""tritonx-openai whose console nobody reads keeps serving and stops on SIGTERM.

uvicorn logs one access line per request (on by default, as in Triton's frontend)
from its event loop. With its own console handlers the write blocked the loop once a
pipe nobody reads was full (a container's blocking log driver behind a slow remote):
every route stopped answering after ~1,000 requests, and SIGTERM no longer ended
the process. uvicorn's loggers now write through tritonx's queued console handler
(logging_setup.console_handler), as tritonx's own log does (tests/test_log_sink_failure.py).
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from openaiutil import make_repository, make_tokenizer, openai_command
from serverutil import free_ports, server_env, terminate
from uvicorn.logging import AccessFormatter

from tritonx.logging_setup import console_handler

REQUESTS = 2000  # access lines of ~70 bytes: twice what a 64 KiB pipe holds


def _ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, "tritonx-openai exited"
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/health/ready", timeout=5
            ) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("tritonx-openai did not get ready")


def _complete(port: int) -> int:
    body = json.dumps({"model": "echo_llm", "prompt": "hello", "max_tokens": 2})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as reply:
        reply.read()
        return int(reply.status)


def test_console_nobody_reads(tmp_path: Path) -> None:
    repo, backends = make_repository(tmp_path)
    tokenizer = make_tokenizer(tmp_path / "tokenizer")
    (port,) = free_ports(1)
    command = openai_command(
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        f"--tokenizer={tokenizer}",
        "--host=127.0.0.1",
        f"--openai-port={port}",
    )
    env = server_env({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    # stdout and stderr: one pipe, read only at the end.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: chunks.append(process.stdout.read() if process.stdout else b"")
    )
    try:
        _ready(port, process)
        statuses = {_complete(port) for _ in range(REQUESTS)}
        assert statuses == {200}, statuses
    finally:
        reader.start()  # from here on the console is read
        # Exits on SIGTERM (it used to stay blocked on the full console).
        returncode = terminate(process)
    reader.join(timeout=60)
    console = b"".join(chunks).decode(errors="replace")
    assert returncode == 0, console[-3000:]
    access = console.count('"POST /v1/completions HTTP/1.1" 200')
    assert access == REQUESTS, console[-3000:]
    assert "Traceback" not in console, console[-3000:]


class _FailsOnce(io.StringIO):
    """A console whose first write fails (a pipe whose reader left, then came back)."""

    failed = False

    def write(self, text: str) -> int:
        if not self.failed:
            self.failed = True
            raise BrokenPipeError("reader went away")
        return super().write(text)


def test_a_lost_access_line_is_counted_in_plain_words() -> None:
    """The note about lost entries is not an access record: the access formatter
    cannot format it, so it is written plain (it used to end the writer thread)."""
    handler = console_handler("stderr")
    stream = _FailsOnce()
    handler.stream = stream  # type: ignore[attr-defined]
    handler.setFormatter(
        AccessFormatter(
            '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
        )
    )
    logger = logging.getLogger("tritonx.test.access")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for _ in range(2):
            logger.info('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", "/x", "1.1", 200)
            handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == (
        "WARNING: 1 log entries were dropped: stderr could not take them "
        "(failing, or not reading fast enough)"
    ), lines
    assert lines[1:] == ['INFO:     1.2.3.4:5 - "GET /x HTTP/1.1" 200 OK'], lines
