"""--model-namespacing in POLL mode: a poll round relinks ensembles from the listing
it took when it began. A composing model moved away while the round runs is still
loaded when the round ends (its unload is the next round's), so its ensemble keeps
it; relinking from a fresh listing once ran that ensemble on the other repository's
model while a client naming the moved one found two.

The round is held open deterministically: a model added before it waits in
``initialize`` until the test has moved the directory. Driven through
``tritonx.api.Server.poll_model_repository`` (no timer), as Triton 2.51 has no
wire call that runs a poll round.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from test_namespacing import ADDSUB, SUBADD, A, B, duplication_repos

import tritonx.api as api

GATED_CONFIG = """
name: "gated"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

GATED_MODEL = """
import os
import time


class TritonPythonModel:
    def initialize(self, args):
        open({started!r}, "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists({gate!r}) and time.monotonic() < deadline:
            time.sleep(0.01)

    def execute(self, requests):
        return []
"""


def _outputs(server: api.Server, model: str) -> dict[str, Any]:
    (response,) = list(server.model(model).infer(inputs={"INPUT0": A, "INPUT1": B}))
    return {
        name: np.from_dlpack(response.outputs[name]).tolist()
        for name in ("OUTPUT0", "OUTPUT1")
    }


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_a_model_moved_during_a_round_keeps_its_ensemble_until_the_next(
    tmp_path: Path,
) -> None:
    repos = duplication_repos(tmp_path)
    own, aside = repos[0] / "composing_model", tmp_path / "composing_model"
    started, gate = tmp_path / "STARTED", tmp_path / "GATE"
    server = api.Server(
        model_repository=[str(repo) for repo in repos],
        model_control_mode=api.ModelControlMode.POLL,
        repository_poll_secs=0,  # no timer: only the calls below poll
        model_namespacing=True,
    ).start()
    try:
        assert _outputs(server, "simple_addsub") == ADDSUB
        # A new model whose loading holds the next round open.
        gated = repos[0] / "gated"
        (gated / "1").mkdir(parents=True)
        (gated / "config.pbtxt").write_text(GATED_CONFIG)
        (gated / "1" / "model.py").write_text(
            GATED_MODEL.format(started=str(started), gate=str(gate))
        )
        failures: list[BaseException] = []

        def poll() -> None:
            try:
                server.poll_model_repository()
            except BaseException as error:  # reported by the assertion below
                failures.append(error)

        round_ = threading.Thread(target=poll)
        round_.start()
        _wait_for(started)  # the round has its listing and is loading "gated"
        shutil.move(own, aside)
        gate.touch()
        round_.join(timeout=120)
        assert not round_.is_alive() and not failures, failures
        assert server.model("gated").ready()
        # The round's listing had the moved model: its ensemble still uses it.
        assert _outputs(server, "simple_addsub") == ADDSUB
        assert _outputs(server, "simple_subadd") == SUBADD
        # The next round unloads it and relinks the ensemble to the only one left.
        server.poll_model_repository()
        assert _outputs(server, "simple_addsub") == SUBADD
        assert _outputs(server, "composing_model") == SUBADD
    finally:
        gate.touch()
        server.stop()
