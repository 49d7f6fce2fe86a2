"""Load/unload churn of one model while traffic flows to it and to another model.

Explicit model control; the repository API unloads and reloads ``churn`` over and
over while HTTP and gRPC clients keep sending to ``churn`` and to ``steady``.
Requests to ``churn`` may fail only the way Triton says a model is absent or
going away (gRPC NOT_FOUND / UNAVAILABLE, HTTP 404 / 503 with an error body
naming the model); requests to ``steady`` never fail.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from chaosutil import (
    Outcome,
    grpc_infer,
    http_infer,
    http_post,
    stub_for,
    write_echo_model,
)
from serverutil import run_server

CYCLES = 6
MAX_SECONDS = 30.0


def _client(
    kind: str, model: str, target: str | int, stop: threading.Event, out: list[Outcome]
) -> None:
    if kind == "http":
        assert isinstance(target, int)
        while not stop.is_set():
            out.append(http_infer(target, model, timeout=10))
        return
    assert isinstance(target, str)
    channel, stub = stub_for(target)
    with channel:
        while not stop.is_set():
            out.append(grpc_infer(stub, model, timeout=10))


def _churn_failure_ok(kind: str, outcome: Outcome) -> bool:
    if kind == "grpc":
        return (
            outcome.code in ("NOT_FOUND", "UNAVAILABLE") and "churn" in outcome.message
        )
    return outcome.code in ("404", "503") and "churn" in outcome.message


def test_load_unload_churn_under_traffic(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_echo_model(repo, "churn")
    write_echo_model(repo, "steady")
    with run_server(
        repo,
        "--model-control-mode=explicit",
        "--load-model=churn",
        "--load-model=steady",
    ) as server:
        port = server.ports["http"]
        stop = threading.Event()
        results: dict[tuple[str, str], list[Outcome]] = {}
        threads = []
        for kind in ("http", "grpc"):
            for model in ("churn", "steady"):
                out: list[Outcome] = []
                results[(kind, model)] = out
                where: str | int = port if kind == "http" else server.grpc_url
                thread = threading.Thread(
                    target=_client, args=(kind, model, where, stop, out), daemon=True
                )
                threads.append(thread)
                thread.start()
        control: list[tuple[str, int, str]] = []
        deadline = time.monotonic() + MAX_SECONDS
        try:
            for _ in range(CYCLES):
                if time.monotonic() > deadline:
                    break
                for action in ("unload", "load"):
                    time.sleep(0.2)  # let traffic see each state
                    status, body = http_post(
                        port, f"/v2/repository/models/churn/{action}"
                    )
                    control.append((action, status, body))
            time.sleep(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=15)
        alive = server.process.poll() is None
        log = server.log_text()

    assert alive, f"server died during churn:\n{log[-4000:]}"
    assert all(not t.is_alive() for t in threads), "a client hung (no answer in 10 s)"
    assert all(status == 200 for _, status, _ in control), control
    assert len(control) >= 4, control
    summary = {key: Counter(o.code for o in out) for key, out in results.items()}
    print(f"churn outcomes: {summary}")
    for kind in ("http", "grpc"):
        steady = results[(kind, "steady")]
        failed = [o for o in steady if not o.ok]
        assert steady and not failed, (
            f"{kind} requests to the steady model failed: {failed[:5]} {summary}"
        )
        churn = results[(kind, "churn")]
        assert any(o.ok for o in churn), f"no {kind} request reached churn: {summary}"
        bad = [o for o in churn if not o.ok and not _churn_failure_ok(kind, o)]
        assert not bad, (
            f"{kind} requests to churn failed unlike Triton: {bad[:5]} {summary}"
        )
