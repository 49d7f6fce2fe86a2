"""A python model's own readiness check (``is_ready()``, newer Triton) behind the
model-ready endpoints (HTTP, gRPC) and the server's strict readiness, in process
and in stub processes, through the wire.

The model answers what a file beside it says: ``true``, ``false``, ``raise`` (an
exception), ``none`` (not a bool) or ``hang`` (no answer within Triton's five
seconds); each call is counted in another file.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from serverutil import RunningServer, run_server
from testmodels import ADD_SUB, ADD_SUB_PY

IS_READY = """
    def is_ready(self):
        directory = os.path.dirname(os.path.dirname(__file__))
        with open(os.path.join(directory, "calls"), "a") as f:
            f.write("x")
        with open(os.path.join(directory, "answer")) as f:
            answer = f.read().strip()
        if answer == "raise":
            raise RuntimeError("dependency down")
        if answer == "none":
            return None
        if answer == "hang":
            time.sleep(30)
        return answer == "true"

"""
ASYNC_IS_READY = IS_READY.replace("    def is_ready", "    async def is_ready").replace(
    "time.sleep(30)", "await asyncio.sleep(30)"
)


def model_py(is_ready: str) -> str:
    header = "import asyncio\nimport os\nimport time\n"
    return header + ADD_SUB_PY.replace(
        "class TritonPythonModel:\n", "class TritonPythonModel:\n" + is_ready
    )


def repository(root: Path) -> Path:
    repo = root / "models"
    for name, source in (
        ("checked", model_py(IS_READY)),
        ("checked_async", model_py(ASYNC_IS_READY)),
        ("plain", ADD_SUB_PY),
    ):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.py").write_text(source)
        (repo / name / "config.pbtxt").write_text(
            ADD_SUB.replace('name: "add_sub"', f'name: "{name}"')
        )
        (repo / name / "answer").write_text("true")
    return repo


def http_ready(server: RunningServer, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{server.http_url}{path}", timeout=30):
            return True
    except urllib.error.HTTPError:
        return False


def answers(server: RunningServer, model: str) -> tuple[bool, bool]:
    """(HTTP, gRPC) model readiness."""
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        by_grpc = bool(grpc.is_model_ready(model))
    finally:
        grpc.close()
    return http_ready(server, f"/v2/models/{model}/ready"), by_grpc


MODES = {
    "in-process": (),
    "process": ("--backend-config=python,execution-mode=process",),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_the_models_answer_decides_its_readiness(tmp_path: Path, mode: str) -> None:
    repo = repository(tmp_path)
    with run_server(repo, "--strict-readiness=true", *MODES[mode]) as server:
        for model in ("checked", "checked_async"):
            answer = repo / model / "answer"
            assert answers(server, model) == (True, True)
            for said, ready in (("false", False), ("raise", False), ("none", False)):
                answer.write_text(said)
                assert answers(server, model) == (ready, ready), said
                # Strict readiness asks every model's check as well.
                assert http_ready(server, "/v2/health/ready") is ready
            answer.write_text("true")
            assert answers(server, model) == (True, True)
            assert http_ready(server, "/v2/health/ready")
        # A model without is_ready() is ready as before; nothing else changes.
        assert answers(server, "plain") == (True, True)
        (repo / "checked" / "answer").write_text("false")
        assert http_ready(server, "/v2/health/live")
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        assert grpc.get_model_metadata("checked").name == "checked"
        grpc.close()
    # One call per check: 2 per answer (HTTP and gRPC), plus the strict ones.
    assert len((repo / "checked" / "calls").read_text()) >= 10


@pytest.mark.parametrize("mode", list(MODES))
def test_a_check_that_does_not_answer_is_not_ready_and_blocks_nothing(
    tmp_path: Path, mode: str
) -> None:
    """No answer within five seconds: not ready. Meanwhile the server answers other
    calls; checks arriving while one runs join it (one call in flight)."""
    repo = repository(tmp_path)
    (repo / "checked" / "answer").write_text("hang")
    with run_server(repo, *MODES[mode]) as server:
        results: list[bool] = []
        checks = [
            threading.Thread(
                target=lambda: results.append(
                    http_ready(server, "/v2/models/checked/ready")
                )
            )
            for _ in range(3)
        ]
        for check in checks:
            check.start()
        time.sleep(0.5)  # the checks are waiting on is_ready()
        assert http_ready(server, "/v2/health/live")
        assert answers(server, "plain") == (True, True)
        assert any(check.is_alive() for check in checks)  # answered before them
        for check in checks:
            check.join(timeout=30)
        assert results == [False, False, False]
        assert (repo / "checked" / "calls").read_text() == "x"


def test_a_finished_check_is_not_shared_with_the_next_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe thread lets go of its check only after setting the answer; a
    caller arriving in between (a starved thread, under load: the CI flake of the
    test above) must start a new check, not take the finished one's answer. The
    thread is held there deterministically by a future whose set_result waits."""
    import concurrent.futures
    import types

    from tritonx.backends import readiness

    release = threading.Event()

    class HeldFuture(concurrent.futures.Future):  # type: ignore[type-arg]
        def set_result(self, result: object) -> None:
            super().set_result(result)
            release.wait(30)  # the answer is out; _run has not cleared it yet

    monkeypatch.setattr(
        readiness,
        "concurrent",
        types.SimpleNamespace(
            futures=types.SimpleNamespace(
                Future=HeldFuture, TimeoutError=concurrent.futures.TimeoutError
            )
        ),
    )
    answers = iter([True, False])
    probe = readiness.ReadinessProbe("m_0", lambda: next(answers))
    try:
        assert probe.ready() is True
        assert probe.ready() is False  # a new check, not the first one's answer
    finally:
        release.set()
