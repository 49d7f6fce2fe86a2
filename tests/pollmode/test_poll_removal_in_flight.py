"""Poll mode: a model removed from the repository while a request runs in it stops
serving at the next poll and its request still completes, in the background:
later polls go on (a model added meanwhile is loaded and served while the removed
one still holds its request), so a request that never ends holds no other model
up.

Not compared with Triton 2.51, which differs on purpose here (docs/reliability.md):
its poll waits for that request, the removed model staying ready (though gone from
the index) and a model added meanwhile not loaded until the request ends (20 s
seen, checked by hand 2026-12-06).

The model holds a tagged request until the test opens it (pollutil.MODEL_PY)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import tritonclient.http as httpclient
from pollutil import PollRepo, infer_value, wait_for
from serverutil import run_server

POLL_ARGS = ("--model-control-mode=poll", "--repository-poll-secs=1")


def test_a_removed_model_drains_while_polls_go_on(tmp_path: Path) -> None:
    repo = PollRepo(tmp_path / "repo", tmp_path / "markers")
    repo.model("held", 1)
    held: dict[str, Any] = {}
    with run_server(repo.root, *POLL_ARGS) as server:
        client = httpclient.InferenceServerClient(server.http_url)

        def send() -> None:
            with httpclient.InferenceServerClient(server.http_url) as own:
                held["value"] = infer_value(own, "held", tag=7)

        thread = threading.Thread(target=send, daemon=True)
        try:
            wait_for("held to load", lambda: client.is_model_ready("held"))
            thread.start()
            wait_for("the request to run", lambda: repo.ran(7))
            repo.remove("held")
            wait_for(
                "the poll to see it gone", lambda: not client.is_model_ready("held")
            )
            repo.model("other", 1)
            # A later poll loads it while "held" still runs request 7.
            wait_for("other to load", lambda: client.is_model_ready("other"))
            assert infer_value(client, "other") == 1.0
            assert thread.is_alive()  # request 7 is still held
        finally:
            repo.release()
            thread.join(60)
            client.close()
    assert held["value"] == 1.0
