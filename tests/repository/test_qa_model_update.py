"""Behaviours from Triton's QA directory L0_model_update (instance_update_test.py)
for Python models on the CPU, as a differential test: the same reloads go to
tritonx (models in process and in stub processes) and, when
TRITONX_REFERENCE_CMD is given, to Triton 2.51, and the instances each
initializes and finalizes must match.

A reload whose config differs only in its instance groups updates the model in
place: instances are matched by signature (the group apart from its name and
count), those the new config still asks for are kept, the others created or
retired; any other config change, or a change of the model's files, builds the
model again. The GPU variants of the QA are left out (no GPU here)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import py_compile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from serverutil import (
    PYTHON_MODEL_SERVERS,
    RunningServer,
    infer_json,
    load_over_http,
    run_python_model_server,
)
from tritonclient.utils import InferenceServerException

SERVERS = list(PYTHON_MODEL_SERVERS)

# Appends "init" / "fini" to <markers>/events (its config's "markers" parameter,
# outside the model directory so the model's timestamp does not change). While
# <markers>/hold_init (hold_execute) exists, initialize (execute) says so in
# <markers>/init_held (execute_held) and waits for it to go: the test decides
# when a new instance or a running request may finish, with no timing involved.
MODEL = """
import json
import os
import time

import triton_python_backend_utils as pb_utils


def _hold(markers, name):
    gate = os.path.join(markers, "hold_" + name)
    if os.path.exists(gate):
        open(os.path.join(markers, name + "_held"), "w").close()
        while os.path.exists(gate):
            time.sleep(0.01)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.markers = config["parameters"]["markers"]["string_value"]
        _hold(self.markers, "init")
        with open(os.path.join(self.markers, "events"), "a") as f:
            f.write("init\\n")

    def execute(self, requests):
        _hold(self.markers, "execute")
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
                    "OUTPUT0",
                    pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
                for r in requests]

    def finalize(self):
        with open(os.path.join(self.markers, "events"), "a") as f:
            f.write("fini\\n")
"""

CPU = "{ count: %d kind: KIND_CPU }"
DIRECT = "sequence_batching { direct { } max_sequence_idle_microseconds: 8000000 }"
OLDEST = (
    "sequence_batching { oldest { max_candidate_sequences: 4 } "
    "max_sequence_idle_microseconds: 8000000 }"
)


@dataclass
class Model:
    """The model "m": its config, its markers and the server running it."""

    config: Path
    markers: Path
    max_batch_size: int = 8
    scheduling: str = ""
    extra: str = ""  # more config fields
    client: httpclient.InferenceServerClient = field(init=False)
    server: RunningServer = field(init=False)

    def write_config(self, groups: str) -> None:
        batching = "dynamic_batching { }" if not self.scheduling else self.scheduling
        self.config.write_text(f"""
name: "m"
backend: "python"
max_batch_size: {self.max_batch_size}
parameters {{ key: "markers" value: {{ string_value: "{self.markers}" }} }}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {groups} ]
{batching}
{self.extra}
""")

    def load(self, groups: str | None = None) -> None:
        if groups is not None:
            self.write_config(groups)
        self.client.load_model("m")
        assert self.client.is_model_ready("m")

    def events(self) -> tuple[int, int]:
        """(initializations, finalizations) so far."""
        path = self.markers / "events"
        lines = path.read_text().splitlines() if path.exists() else []
        return lines.count("init"), lines.count("fini")

    def settled(self, live: int) -> tuple[int, int]:
        """events() once ``live`` instances are left: a removed instance is
        finalized once its last user lets it go, at no fixed point (Triton 2.51
        too), so finalizations are waited for."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            init, fini = self.events()
            if init - fini <= live:
                break
            time.sleep(0.05)
        return self.events()

    def steady_counts(self) -> tuple[int, int]:
        """(inference count, execution count) of the statistics once they stopped
        moving (Triton 2.51 records an execution's statistics after its responses
        have left)."""
        last = (-1, -1)
        while True:
            stats = self.client.get_inference_statistics("m")["model_stats"][0]
            counts = (stats["inference_count"], stats["execution_count"])
            if counts == last:
                return counts
            last = counts
            time.sleep(0.2)

    def infer(self, sequence: dict[str, object] | None = None) -> None:
        data = np.arange(4, dtype=np.float32).reshape(1, 4)
        inputs = [httpclient.InferInput("INPUT0", [1, 4], "FP32")]
        inputs[0].set_data_from_numpy(data)
        result = self.client.infer("m", inputs, **(sequence or {}))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)

    def infer_from_thread(self) -> None:
        """infer() for another thread (tritonclient.http's gevent pool is not
        thread safe)."""
        data = [0.0, 1.0, 2.0, 3.0]
        status, body = infer_json(
            self.server,
            "m",
            [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": data}],
        )
        assert status == 200, body
        assert body["outputs"][0]["data"] == data  # type: ignore[index]

    def load_from_thread(self) -> None:
        """load() for another thread (see infer_from_thread)."""
        assert load_over_http(self.server, "m") == (200, None)

    def wait_for(self, marker: str) -> None:
        deadline = time.monotonic() + 60
        while not (self.markers / marker).exists():
            assert time.monotonic() < deadline, f"{marker} never appeared"
            time.sleep(0.01)


@contextmanager
def serving(
    server_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    scheduling: str = "",
    poll_with: str | None = None,
) -> Iterator[Model]:
    """A server (PYTHON_MODEL_SERVERS) in explicit mode with "m" not loaded yet,
    or with ``poll_with`` (instance groups) in poll mode, "m" loaded from them."""
    # Importing model.py must not write __pycache__ into the version directory
    # (a change of the version's files: Triton would build it again).
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    markers = tmp_path / server_name / "markers"
    markers.mkdir(parents=True)
    repo = tmp_path / server_name / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "1" / "model.py").write_text(MODEL)
    # Triton 2.51's python stub writes __pycache__ whatever the variable says:
    # up to date bytecode written beforehand leaves it nothing to write.
    py_compile.compile(str(repo / "m" / "1" / "model.py"), doraise=True)
    model = Model(repo / "m" / "config.pbtxt", markers, scheduling=scheduling)
    mode = ["--model-control-mode=explicit"]
    if poll_with is not None:
        mode = ["--model-control-mode=poll", "--repository-poll-secs=1"]
        model.write_config(poll_with)
    with (
        run_python_model_server(server_name, repo, *mode, *args) as server,
        httpclient.InferenceServerClient(server.http_url, concurrency=4) as client,
    ):
        model.server, model.client = server, client
        yield model


def _counts_scenario(model: Model) -> list[tuple[int, int]]:
    seen = []

    def step(groups: str, live: int, **changes: int) -> None:
        for key, value in changes.items():
            setattr(model, key, value)
        model.load(groups)
        model.infer()
        seen.append(model.settled(live))

    step(CPU % 1, 1)
    step(CPU % 3, 3)  # two added
    step(CPU % 1, 1)  # two removed
    step(CPU % 1, 1)  # nothing changed
    step(CPU % 0, 1)  # count 0 reads as 1: nothing changes
    step(CPU % 8, 8)
    step(CPU % 4, 4)  # several at once
    # One model all along: its statistics count every request since the first load.
    seen.append(model.steady_counts())
    step(CPU % 4, 4, max_batch_size=4)  # not an instance change: built again
    model.client.unload_model("m")
    seen.append(model.settled(0))
    return seen


@pytest.mark.parametrize("server_name", SERVERS)
def test_instance_count_changes_update_in_place(
    server_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(server_name, tmp_path, monkeypatch) as model:
        seen = _counts_scenario(model)
    assert seen == [
        (1, 0),
        (3, 0),
        (3, 2),
        (3, 2),
        (3, 2),
        (10, 2),
        (10, 6),
        (7, 7),
        (14, 10),
        (14, 14),
    ]


@pytest.mark.parametrize("server_name", SERVERS)
def test_instances_are_matched_by_signature(
    server_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Names and how a group's count is split do not matter; a group that differs
    # in anything else (here a rate_limiter block, ignored without --rate-limit)
    # is another signature.
    other = '{ name: "%s" count: %d kind: KIND_CPU rate_limiter { priority: 2 } }'
    seen = []
    with serving(server_name, tmp_path, monkeypatch) as model:
        model.load('{ name: "a" count: 1 kind: KIND_CPU }, ' + other % ("b", 2))
        seen.append(model.settled(3))
        model.load('{ name: "x" count: 1 kind: KIND_CPU }, ' + other % ("y", 2))
        seen.append(model.settled(3))
        model.load(other % ("p", 1) + ", " + other % ("q", 1) + ", " + CPU % 1)
        seen.append(model.settled(3))
        model.load(other % ("r", 1) + ", " + CPU % 2)  # one of each way
        seen.append(model.settled(3))
        model.infer()
        model.client.unload_model("m")
        seen.append(model.settled(0))
    assert seen == [(3, 0), (3, 0), (3, 0), (4, 1), (4, 4)]


@pytest.mark.parametrize("server_name", SERVERS)
def test_load_with_config_and_failed_updates(
    server_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []
    with serving(server_name, tmp_path, monkeypatch) as model:
        model.load(CPU % 2)
        # The config of the load request, the served one with one more instance.
        config = model.client.get_model_config("m")
        config["instance_group"][0]["count"] += 1
        model.client.load_model("m", config=json.dumps(config))
        seen.append(model.settled(3))
        seen.append(model.client.get_model_config("m")["instance_group"][0]["count"])
        # A config that does not parse fails the load; the model serves on.
        model.config.write_text("--- not a config ---")
        with pytest.raises(InferenceServerException):
            model.client.load_model("m")
        model.infer()
        model.load(CPU % 1)  # from the 2 of the repository's last good config
        seen.append(model.settled(1))
        seen.append(model.client.get_model_config("m")["instance_group"][0]["count"])
        model.infer()
    assert seen == [(3, 0), 3, (3, 2), 1]


@pytest.mark.parametrize("server_name", SERVERS)
def test_changed_model_file_builds_the_model_again(
    server_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(server_name, tmp_path, monkeypatch) as model:
        model.load(CPU % 2)
        version_file = model.config.parent / "1" / "model.py"
        later = time.time() + 2
        os.utime(version_file, (later, later))
        model.load(CPU % 3)
        seen = model.settled(3)
        model.infer()
    assert seen == (5, 2)


@pytest.mark.parametrize("server_name", ["in-process", "process"])
def test_infer_while_instances_initialize(
    server_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the added instance is still in initialize, the one serving answers,
    as Triton's own QA test (test_infer_while_updating) expects. Not compared
    with Triton 2.51: it holds the request until the update is over (seen: the
    request still waiting after 60 s of a held initialize)."""
    with serving(server_name, tmp_path, monkeypatch) as model:
        model.load(CPU % 1)
        (model.markers / "hold_init").touch()
        model.write_config(CPU % 2)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            update = pool.submit(model.load_from_thread)
            model.wait_for("init_held")
            model.infer()
            still_updating = not update.done()
            (model.markers / "hold_init").unlink()
            update.result()
        seen = model.settled(2)
    assert still_updating
    assert seen == (2, 0)


@pytest.mark.parametrize("server_name", SERVERS)
def test_update_while_a_request_executes(
    server_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Adding an instance does not wait for the request the serving one runs.
    with serving(server_name, tmp_path, monkeypatch) as model:
        model.load(CPU % 1)
        (model.markers / "hold_execute").touch()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(model.infer_from_thread)
            model.wait_for("execute_held")
            model.load(CPU % 2)
            still_running = not running.done()
            (model.markers / "hold_execute").unlink()
            running.result()
        seen = model.settled(2)
        model.infer()
    assert still_running
    assert seen == (2, 0)


@pytest.mark.parametrize("server_name", SERVERS)
def test_poll_mode_updates_instances_in_place(
    server_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A config change found by the repository poll is a reload like any other.
    seen = []
    with serving(server_name, tmp_path, monkeypatch, poll_with=CPU % 1) as model:
        seen.append(model.settled(1))
        for count, expected in ((3, (3, 0)), (2, (3, 1))):
            model.write_config(CPU % count)
            deadline = time.monotonic() + 60
            while model.events() != expected and time.monotonic() < deadline:
                time.sleep(0.1)
            seen.append(model.events())
            model.infer()
    assert seen == [(1, 0), (3, 0), (3, 1)]


@pytest.mark.parametrize("server_name", SERVERS)
def test_added_instances_are_warmed_up(
    server_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each added instance runs the warmup sample once (counted in the model's
    # statistics, as Triton counts warmup), kept ones do not run it again.
    seen = []
    with serving(server_name, tmp_path, monkeypatch) as model:
        model.extra = """model_warmup [ { name: "zeros" batch_size: 1
            inputs { key: "INPUT0" value: {
                data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]"""
        for count in (1, 3, 2, 4):
            model.load(CPU % count)
            model.settled(count)
            seen.append(model.steady_counts()[1])
    assert seen == [1, 3, 3, 5]


def _sequence(n: int, **flags: bool) -> dict[str, object]:
    return {"sequence_id": n, **flags}


@pytest.mark.parametrize("strategy", [DIRECT, OLDEST], ids=["direct", "oldest"])
@pytest.mark.parametrize("server_name", SERVERS)
def test_sequences_keep_their_retired_instances(
    server_name: str, strategy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Triton's _test_scheduler_update_with_ongoing_sequences, with a CPU group of
    # another signature where the QA adds a GPU instance: a removed instance
    # lives on until the sequences bound to it end.
    other = "{ count: 1 kind: KIND_CPU rate_limiter { priority: 2 } }"
    seen = []
    with serving(server_name, tmp_path, monkeypatch, scheduling=strategy) as model:
        model.load(CPU % 2)
        model.infer(_sequence(1, sequence_start=True))
        model.infer(_sequence(1, sequence_end=True))
        model.load(CPU % 4)  # two added with no sequence running
        seen.append(model.settled(4))
        model.load(CPU % 3)
        seen.append(model.settled(3))
        model.infer(_sequence(1, sequence_start=True))
        model.infer(_sequence(2, sequence_start=True))
        # Both sequences hold a slot of two of the three instances: one of them
        # is finalized at once, the other two once their sequences end.
        model.load(other)
        seen.append(model.settled(3))
        model.infer(_sequence(1))
        model.infer(_sequence(2))
        model.infer(_sequence(3, sequence_start=True))
        seen.append(model.events())
        model.infer(_sequence(1, sequence_end=True))
        model.infer(_sequence(2, sequence_end=True))
        seen.append(model.settled(1))
        model.infer(_sequence(3, sequence_end=True))
        model.client.unload_model("m")
        seen.append(model.settled(0))
    assert seen == [(4, 0), (4, 1), (5, 2), (5, 2), (5, 4), (5, 5)]


@pytest.mark.parametrize("server_name", SERVERS)
def test_rate_limited_instance_updates(
    server_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new resource requirement is a new signature; one the explicit resource
    # count cannot schedule fails the load and the model serves on.
    limited = '{ count: 1 kind: KIND_CPU rate_limiter { resources [ { name: "R1" count: %d } ] } }'
    seen: list[object] = []
    with serving(
        server_name,
        tmp_path,
        monkeypatch,
        "--rate-limit=execution_count",
        "--rate-limit-resource=R1:10",
    ) as model:
        model.load(limited % 2)
        model.load(limited % 8)
        seen.append(model.settled(1))
        for _ in range(4):
            model.infer()
        model.write_config(limited % 32)
        with pytest.raises(InferenceServerException) as refused:
            model.client.load_model("m")
        seen.append('Resource count for "R1" is limited to 10' in str(refused.value))
        model.infer()
        model.load(limited % 10)
        seen.append(model.settled(1))
        model.infer()
    # The instance the refused load made was initialized and finalized again.
    assert seen == [(2, 1), True, (4, 3)]
