"""A --log-file the server cannot write: it keeps serving, says so once, and picks
up again when the file can be written.

Python's logging prints a traceback per entry to stderr when a write fails (a full
disk: 25 lines per entry, several entries per request at --log-verbose); Triton
2.51 drops the entries silently. tritonx drops them too, reports the first failure
once on stderr, and when writing works again the log first says how many entries
were lost. The full disk is /dev/full (every write: ENOSPC); the sink that comes
back is a named pipe whose reader goes away (EPIPE) and returns, like a log shipper
that restarts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import tritonclient.http as httpclient
from grpcutil import wait_until
from logutil import build_repo, infer_both, messages, quiet_server

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
    """Reads a named pipe until closed; lines so far in ``lines``."""

    def __init__(self, path: Path) -> None:
        # Non-blocking open: the server (the writer) may not have opened it yet.
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(self.fd, True)
        self.text = ""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                # No writer yet (or any more): poll until one comes or we close.
                threading.Event().wait(0.05)
                continue
            self.text += chunk.decode()

    def close(self) -> None:
        os.close(self.fd)
        self.thread.join(timeout=5)


def _reading(path: Path) -> Iterator[_PipeReader]:
    reader = _PipeReader(path)
    try:
        yield reader
    finally:
        reader.close()


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
