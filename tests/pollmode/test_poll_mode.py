"""--model-control-mode=poll end to end: a real server watching a repository that
the test changes, observed through tritonclient (HTTP and gRPC).

Nothing here measures time: every step waits on observable state (the repository
index, an answer, a marker file) with a deadline that only bounds a failing test.
The poll interval is 1 s to keep the tests short.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from pollutil import (
    PollRepo,
    error_of,
    infer_value,
    states,
    wait_for,
    wait_states,
)
from serverutil import RunningServer, run_server

POLL_ARGS = ("--model-control-mode=poll", "--repository-poll-secs=1")


@pytest.fixture
def served(poll_repo: PollRepo) -> Iterator[tuple[RunningServer, Any]]:
    poll_repo.model("a", 1)
    with run_server(poll_repo.root, *POLL_ARGS) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            yield server, client
        finally:
            client.close()


def test_added_changed_and_removed_models_and_versions(
    served: tuple[RunningServer, Any], poll_repo: PollRepo
) -> None:
    _, client = served
    assert states(client, "a") == {"1": "READY"}

    poll_repo.model(
        "b", 1, extra='parameters { key: "value" value: { string_value: "5" } }'
    )
    wait_states(client, "b", {"1": "READY"})
    assert infer_value(client, "b") == 5.0

    # A new version replaces version 1 under the default policy (latest 1).
    poll_repo.version("a", 2)
    wait_states(client, "a", {"1": "UNAVAILABLE", "2": "READY"})
    assert infer_value(client, "a") == 2.0

    # A config change: both versions under "latest 2".
    poll_repo.config("a", "version_policy: { latest: { num_versions: 2 } }")
    wait_states(client, "a", {"1": "READY", "2": "READY"})
    assert infer_value(client, "a", "1") == 1.0

    # A removed version and a removed model.
    poll_repo.remove("a", 2)
    poll_repo.remove("b")
    wait_for(
        "b gone",
        lambda: "b" not in {r["name"] for r in client.get_model_repository_index()},
    )
    wait_states(client, "a", {"1": "READY", "2": "UNAVAILABLE"})
    assert error_of(lambda: infer_value(client, "b")) == (
        "404",
        "Request for unknown model: 'b' has no available versions",
    )
    assert infer_value(client, "a") == 1.0


def test_broken_config_keeps_the_old_version_serving(
    served: tuple[RunningServer, Any], poll_repo: PollRepo
) -> None:
    server, client = served
    (poll_repo.root / "a" / "config.pbtxt").write_text('name: "a"\nbogus_field: 1\n')
    wait_for(
        "two rounds' poll failures in the log",
        lambda: server.log_text().count("Poll failed for model directory 'a'") >= 2,
    )
    # Each round logs the parser's detail once with its "Poll failed" line (one
    # more may belong to a round still running).
    log_text = server.log_text()
    rounds = log_text.count("Poll failed for model directory 'a'")
    assert log_text.count("Error parsing text-format") <= rounds + 1
    assert states(client, "a") == {"1": "READY"}
    assert infer_value(client, "a") == 1.0

    # A config naming another model is refused the same way.
    poll_repo.config("a", config_name="other")
    wait_for(
        "the name mismatch in the log",
        lambda: "unexpected directory name 'a' for model 'other'" in server.log_text(),
    )
    assert infer_value(client, "a") == 1.0

    # Fixed: picked up at the next poll.
    poll_repo.config("a", 'parameters { key: "value" value: { string_value: "7" } }')
    wait_for("the fixed config served", lambda: infer_value(client, "a") == 7.0)


def test_failing_new_version_keeps_the_old_one(
    served: tuple[RunningServer, Any], poll_repo: PollRepo
) -> None:
    _, client = served
    poll_repo.version("a", 2, fail_init=True)
    rows = wait_for(
        "version 2 failed",
        lambda: [
            r
            for r in client.get_model_repository_index()
            if r.get("version") == "2" and r.get("state") == "UNAVAILABLE"
        ],
    )
    assert "init failed on purpose" in rows[0]["reason"]
    assert states(client, "a") == {"1": "READY", "2": "UNAVAILABLE"}
    assert infer_value(client, "a") == 1.0
    # A broken new model is never served; the index lists its name only.
    (poll_repo.root / "c" / "1").mkdir(parents=True)
    (poll_repo.root / "c" / "config.pbtxt").write_text("bogus: 1\n")
    poll_repo.version("a", 2)
    wait_states(client, "a", {"1": "UNAVAILABLE", "2": "READY"})
    assert {"name": "c"} in list(client.get_model_repository_index())
    assert error_of(lambda: infer_value(client, "c")) == (
        "404",
        "Request for unknown model: 'c' is not found",
    )


def test_unchanged_versions_are_not_reloaded(poll_repo: PollRepo) -> None:
    poll_repo.model("a", 1, 2, extra="version_policy: { all: {} }")
    with run_server(poll_repo.root, *POLL_ARGS) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        poll_repo.version("a", 3)
        wait_for("version 3", lambda: states(client, "a").get("3") == "READY")
        # Two instances each: initialize ran twice per version, once per instance.
        assert [poll_repo.inits("a", v) for v in (1, 2, 3)] == [2, 2, 2]
        poll_repo.version("a", 2)  # model.py rewritten: only version 2 reloads
        wait_for("version 2 reloaded", lambda: poll_repo.inits("a", 2) == 4)
        wait_for("all ready", lambda: set(states(client, "a").values()) == {"READY"})
        assert [poll_repo.inits("a", v) for v in (1, 3)] == [2, 2]
        client.close()


def test_reload_drops_no_request(
    served: tuple[RunningServer, Any], poll_repo: PollRepo
) -> None:
    server, client = served
    results: dict[int, Any] = {}
    grpc = grpcclient.InferenceServerClient(server.grpc_url)

    def send(tag: int) -> None:
        tensor = grpcclient.InferInput("INPUT0", [1], "FP32")
        tensor.set_data_from_numpy(np.array([tag], np.float32))
        try:
            results[tag] = float(grpc.infer("a", [tensor]).as_numpy("OUTPUT0")[0])
        except Exception as error:
            results[tag] = error

    # A request held inside version 1 (on one of its two instances; the other
    # serves the requests below until the new model takes over).
    held = [threading.Thread(target=send, args=(1,))]
    for thread in held:
        thread.start()
    wait_for("the request executing", lambda: poll_repo.ran(1))

    # The same version reloaded with another config while they are in flight.
    poll_repo.config("a", 'parameters { key: "value" value: { string_value: "9" } }')
    wait_for("new requests on the new model", lambda: infer_value(client, "a") == 9.0)
    assert states(client, "a") == {"1": "READY"}
    assert not results  # still held by the old model

    poll_repo.release()
    for thread in held:
        thread.join(timeout=60)
    assert results == {1: 1.0}
    grpc.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_load_and_unload_are_refused(
    served: tuple[RunningServer, Any], protocol: str
) -> None:
    server, _ = served
    message = "explicit model load / unload is not allowed if polling is enabled"
    if protocol == "http":
        client: Any = httpclient.InferenceServerClient(server.http_url)
        status = "503"
    else:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        status = "StatusCode.UNAVAILABLE"
    for call in (
        lambda: client.load_model("a"),
        lambda: client.unload_model("a"),
        lambda: client.load_model("missing"),
    ):
        assert error_of(call) == (status, message)
    client.close()
