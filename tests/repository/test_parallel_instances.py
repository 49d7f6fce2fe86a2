"""A python model's instances are created at once, each on its own thread (as
Triton's python backend allows): an instance's initialize that waits for all its
siblings to have started can only finish when they run side by side; and when one
instance fails, the load fails with its error and the others are finalized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from serverutil import run_server

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
instance_group [ {{ count: {count} kind: KIND_CPU }} ]
{extra}
"""

# Each instance leaves "started-<name>" and waits (a minute at most) until every
# sibling has: created one after another, the first would give up and fail.
# INPUT0 -1 makes nothing special; instance 2 fails when the repository holds a
# file named "fail".
MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]
        self.name = args["model_instance_name"]
        count = int(os.environ.get("SIBLINGS", "4"))
        open(os.path.join(self.dir, "started-" + self.name), "w").close()
        if self.name.endswith("_2") and os.path.exists(os.path.join(self.dir, "fail")):
            raise RuntimeError("instance 2 refuses to start")
        for _ in range(6000):
            started = [f for f in os.listdir(self.dir) if f.startswith("started-")]
            if len(started) >= count:
                return
            time.sleep(0.01)
        raise RuntimeError(f"only {len(started)} of {count} instances started at once")

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(
                "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests
        ]

    def finalize(self):
        open(os.path.join(self.dir, "finalized-" + self.name), "w").close()
"""

MODES = {
    "in-process": "",
    "process": 'parameters: { key: "EXECUTION_MODE" value: { string_value: "process" } }',
}


def _write(repo: Path, name: str, count: int, extra: str) -> Path:
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        CONFIG.format(name=name, count=count, extra=extra)
    )
    (model / "1" / "model.py").write_text(MODEL)
    return model


@pytest.mark.parametrize("mode", list(MODES))
def test_instances_start_side_by_side(tmp_path: Path, mode: str) -> None:
    repo = tmp_path / "repo"
    model = _write(repo, "wide", 4, MODES[mode])
    with run_server(repo) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        tensor = httpclient.InferInput("INPUT0", [1], "FP32")
        tensor.set_data_from_numpy(np.array([3.0], np.float32))
        assert client.infer("wide", [tensor]).as_numpy("OUTPUT0")[0] == 3.0
    started = sorted(p.name for p in model.glob("started-*"))
    assert started == [f"started-wide_0_{i}" for i in range(4)]


@pytest.mark.parametrize("mode", list(MODES))
def test_one_failing_instance_fails_the_load_and_the_rest_are_finalized(
    tmp_path: Path, mode: str
) -> None:
    repo = tmp_path / "repo"
    model = _write(repo, "wide", 4, MODES[mode])
    (model / "fail").touch()
    # The other three still find four "started-" files (instance 2 leaves one).
    with run_server(repo, "--exit-on-error=false", expect_ready=False) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert not client.is_model_ready("wide")
        index = {row["name"]: row for row in client.get_model_repository_index()}
        assert "instance 2 refuses to start" in index["wide"]["reason"]
    finalized = sorted(p.name for p in model.glob("finalized-*"))
    assert finalized == [f"finalized-wide_0_{i}" for i in (0, 1, 3)]
