"""Behaviours from Triton's QA directory L0_model_update (instance_update_test.py)
for Python models on the CPU, as a differential test: the same reloads go to
tritonx and, when TRITONX_REFERENCE_CMD is given, to Triton 2.51, and the
instances each initializes and finalizes must match.

A reload whose config differs only in the instance count updates the model in
place (instances added or removed, the others untouched); any other config change
builds the model again. The rate-limiter, sequence-batcher and GPU variants of
the QA are left out (they need the same update path first)."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from serverutil import run_either

# Appends "init" / "fini" to <markers>/events (its config's "markers" parameter,
# outside the model directory so the model's timestamp does not change).
MODEL = """
import json
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.path = os.path.join(
            config["parameters"]["markers"]["string_value"], "events")
        with open(self.path, "a") as f:
            f.write("init\\n")

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
                    "OUTPUT0",
                    pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
                for r in requests]

    def finalize(self):
        with open(self.path, "a") as f:
            f.write("fini\\n")
"""


def _config(markers: Path, count: int, max_batch_size: int = 8) -> str:
    return f"""
name: "m"
backend: "python"
max_batch_size: {max_batch_size}
parameters {{ key: "markers" value: {{ string_value: "{markers}" }} }}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU count: {count} }} ]
"""


def _events(markers: Path) -> tuple[int, int]:
    """(initializations, finalizations) so far."""
    path = markers / "events"
    lines = path.read_text().splitlines() if path.exists() else []
    return lines.count("init"), lines.count("fini")


def _scenario(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Initializations so far after each load. (Finalizations are left out:
    Triton 2.51 finalizes a removed instance once its last user lets it go,
    at no fixed point.)"""
    # Importing model.py must not write __pycache__ into the version directory
    # (a change of the version's files: Triton would build it again).
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    markers = tmp_path / kind / "markers"
    markers.mkdir(parents=True)
    repo = tmp_path / kind / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "1" / "model.py").write_text(MODEL)
    # Triton 2.51's python stub writes __pycache__ whatever the variable says:
    # up to date bytecode written beforehand leaves it nothing to write.
    py_compile.compile(str(repo / "m" / "1" / "model.py"), doraise=True)
    config = repo / "m" / "config.pbtxt"
    config.write_text(_config(markers, 1))
    seen = []
    with (
        run_either(kind, repo, "--model-control-mode=explicit") as server,
        httpclient.InferenceServerClient(server.http_url) as client,
    ):

        def load(count: int, max_batch_size: int = 8) -> None:
            if count:
                config.write_text(_config(markers, count, max_batch_size))
            client.load_model("m")
            assert client.is_model_ready("m")
            seen.append(_events(markers)[0])

        load(0)  # the first load: one instance
        load(3)  # two more
        load(1)  # two fewer
        load(0)  # nothing changed
        load(1, max_batch_size=4)  # not an instance change: built again
    return seen


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            "tritonx",
            marks=pytest.mark.xfail(
                strict=True,
                reason="tritonx has no in-place instance update: a reload whose "
                "config differs only in the instance count builds the model again "
                "with all the new count's instances ([1, 4, 5, 5, 6]: 3 then 1 "
                "initializations where Triton 2.51 starts only the 2 added and "
                "none when the count goes down); an unchanged model is kept as "
                "in Triton",
            ),
        ),
        "reference",
    ],
)
def test_instance_count_changes_update_in_place(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Triton 2.51 creates the two instances added when the count goes from 1 to
    # 3 (the one serving is kept), none when it goes down or nothing changed,
    # and one when another field changed (the model is built again).
    assert _scenario(kind, tmp_path, monkeypatch) == [1, 3, 3, 3, 4]
