"""Stopping the native HTTP frontend closes each descriptor it opened once: its
workers (eight by default) each accept on their own duplicate of the listening
socket. They once shared one number, which evhttp closed once per worker: a file
that another thread of the host process had opened in between under that number
was closed under it (seen as EBADF in test_frontend.py's drain test)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudutil import write_model
from serverutil import free_ports
from testmodels import ADD_SUB, ADD_SUB_PY

import tritonx.api as api
from tritonx.api.frontend import KServeHttp


@pytest.fixture
def server(tmp_path: Path) -> Iterator[api.Server]:
    write_model(tmp_path / "repo", "add_sub", ADD_SUB, ADD_SUB_PY)
    running = api.Server(model_repository=str(tmp_path / "repo"), exit_timeout=10)
    running.start(wait_until_ready=True, timeout=60)
    yield running
    running.stop()


def test_stopping_closes_no_descriptor_of_the_host(
    server: api.Server, tmp_path: Path
) -> None:
    """While the frontend stops, another thread keeps opening a file and checking
    that the descriptor it got is still that file when it closes it."""
    mine = tmp_path / "mine"
    mine.write_bytes(b"x")
    inode = mine.stat().st_ino
    lost: list[str] = []

    def churn(stop: threading.Event) -> None:
        while not stop.is_set():
            fd = os.open(mine, os.O_RDONLY)
            try:
                if os.fstat(fd).st_ino != inode:
                    lost.append(f"descriptor {fd} named another file")
            except OSError as error:
                lost.append(f"descriptor {fd}: {error}")
            try:
                os.close(fd)
            except OSError as error:
                lost.append(f"descriptor {fd} closed under us: {error}")

    for _ in range(20):
        (port,) = free_ports(1)
        http = KServeHttp(server, KServeHttp.Options(port=port, thread_count=8))
        http.start()
        stop = threading.Event()
        thread = threading.Thread(target=churn, args=(stop,))
        thread.start()
        try:
            http.stop()
        finally:
            stop.set()
            thread.join()
        assert not lost, lost
