"""SIGTERM under load, and SIGTERM with a model stuck in ``execute``.

Under load: every request the server accepted before SIGTERM is answered with
success, new connections are refused once the drain has begun, and the process
exits 0 within ``--exit-timeout-secs`` plus a margin. Stuck model: the drain is
bounded by ``--exit-timeout-secs`` and the process exits non-zero (work was
abandoned), within a generous 15 s.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

from chaosutil import (
    Outcome,
    connect_refused,
    grpc_infer,
    http_infer,
    stub_for,
    wait_for_lines,
    write_echo_model,
)
from serverutil import run_server

EXIT_TIMEOUT = 10
DELAY = 1.5  # seconds per execute of the slow model
CLIENTS = 6  # per protocol


def _wait_exit(process: subprocess.Popen[str], timeout: float) -> float | None:
    start = time.monotonic()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - start


def test_sigterm_under_load_answers_accepted_requests(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    marker = tmp_path / "executions"
    write_echo_model(repo, "slow", delay=DELAY, marker=marker)
    with run_server(repo, f"--exit-timeout-secs={EXIT_TIMEOUT}") as server:
        port = server.ports["http"]
        outcomes: dict[str, Outcome] = {}
        channel, stub = stub_for(server.grpc_url)

        def http_client(i: int) -> None:
            outcomes[f"http{i}"] = http_infer(port, "slow", timeout=30)

        def grpc_client(i: int) -> None:
            outcomes[f"grpc{i}"] = grpc_infer(stub, "slow", timeout=30)

        threads = [
            threading.Thread(target=fn, args=(i,), daemon=True)
            for i in range(CLIENTS)
            for fn in (http_client, grpc_client)
        ]
        for thread in threads:
            thread.start()
        # The first batch is executing and the rest are queued behind it.
        assert wait_for_lines(marker, 1, timeout=20), "the slow model never ran"
        time.sleep(0.3)
        sent_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the drain has begun; the slow batch is still running
        refused_http = connect_refused(port)
        late_channel, late_stub = stub_for(server.grpc_url)
        with late_channel:
            late_grpc = grpc_infer(late_stub, "slow", timeout=5)
        for thread in threads:
            thread.join(timeout=EXIT_TIMEOUT + 10)
        waited = _wait_exit(server.process, EXIT_TIMEOUT + 10)
        exit_after = None if waited is None else time.monotonic() - sent_at
        channel.close()
        code = server.process.returncode
        log = server.log_text()

    failed = {k: o for k, o in outcomes.items() if not o.ok}
    assert len(outcomes) == 2 * CLIENTS, f"clients still waiting: {outcomes}"
    assert not failed, f"accepted requests not answered with success: {failed}"
    assert refused_http, "a new HTTP connection was accepted after SIGTERM"
    assert not late_grpc.ok and late_grpc.code == "UNAVAILABLE", late_grpc
    assert exit_after is not None, f"still running {EXIT_TIMEOUT + 10} s after SIGTERM"
    assert exit_after < EXIT_TIMEOUT + 5, f"exit took {exit_after:.1f} s"
    assert code == 0, f"exit code {code}:\n{log[-3000:]}"


def test_sigterm_with_model_stuck_in_execute_exits_bounded(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    marker = tmp_path / "executions"
    write_echo_model(repo, "stuck", delay=3600, marker=marker)
    with run_server(repo, "--exit-timeout-secs=2") as server:
        stuck: list[Outcome] = []
        client = threading.Thread(
            target=lambda: stuck.append(
                http_infer(server.ports["http"], "stuck", timeout=30)
            ),
            daemon=True,
        )
        client.start()
        assert wait_for_lines(marker, 1, timeout=20), "the stuck model never ran"
        server.process.send_signal(signal.SIGTERM)
        waited = _wait_exit(server.process, 15)
        if waited is None:
            server.process.kill()  # do not leave it to run_server's 30 s wait
            server.process.wait()
        code = server.process.returncode
        client.join(timeout=10)
        log = server.log_text()

    assert waited is not None, f"still running 15 s after SIGTERM:\n{log[-3000:]}"
    assert code != 0, f"exit code 0 although a request was abandoned:\n{log[-3000:]}"
    assert stuck and not stuck[0].ok, f"the stuck request reported success: {stuck}"
