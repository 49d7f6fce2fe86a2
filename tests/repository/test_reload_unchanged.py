"""An explicit load of a model already loaded, as a differential test (tritonx,
and Triton 2.51 when TRITONX_REFERENCE_CMD is given): which versions are built
again (a new ``initialize``) and which keep serving as they are.

Triton decides per version: one whose files did not change (modification times)
and whose config is the same apart from its version policy keeps serving, with
its statistics and the config it was loaded with. A load with a config override
compares the override with the serving config the same way; a load with files
builds what it serves, and so does the first load from the repository after it.
Loading an ensemble or its model again builds no version of the model. (Not
covered, as tritonx differs: after a load with a config override,
Triton 2.51 treats a load from the repository with no file changed as a no-op,
even when the file's config selects other versions.)"""

from __future__ import annotations

import json
import py_compile
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import run_either

# Appends its version to <markers>/init at each initialize (the directory its
# config's "markers" parameter names, outside the model directory).
MODEL = """
import json
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        markers = config["parameters"]["markers"]["string_value"]
        with open(os.path.join(markers, "init"), "a") as f:
            f.write(args["model_version"] + "\\n")

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
                    "OUTPUT0",
                    pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
                    * SCALE)])
                for r in requests]
"""


def _model(scale: int) -> str:
    return MODEL.replace("SCALE", str(scale))


def _config(markers: Path, policy: str = "all: {}") -> dict:
    return {
        "name": "m",
        "backend": "python",
        "max_batch_size": 8,
        "version_policy": json.loads("{" + _policy_json(policy) + "}"),
        "parameters": {"markers": {"string_value": str(markers)}},
        "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
        "instance_group": [{"kind": "KIND_CPU"}],
    }


def _policy_json(policy: str) -> str:
    if policy == "all: {}":
        return '"all": {}'
    versions = policy.split("[")[1].split("]")[0]
    return '"specific": {"versions": [' + versions + "]}"


def _pbtxt(markers: Path, policy: str = "all: {}") -> str:
    return f"""
name: "m"
backend: "python"
max_batch_size: 8
version_policy: {{ {policy} }}
parameters {{ key: "markers" value: {{ string_value: "{markers}" }} }}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU }} ]
"""


def _inits(markers: Path) -> list[str]:
    path = markers / "init"
    return path.read_text().splitlines() if path.exists() else []


def _infer(client: httpclient.InferenceServerClient, version: str) -> float:
    data = np.ones((1, 4), dtype=np.float32)
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer("m", [tensor], model_version=version)
    return float(result.as_numpy("OUTPUT0")[0][0])


ENSEMBLE = """
name: "e"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [ {
  model_name: "m" model_version: -1
  input_map { key: "INPUT0" value: "IN" }
  output_map { key: "OUTPUT0" value: "OUT" }
} ] }
"""


def _write_model(path: Path, text: str) -> None:
    """model.py and its bytecode beside it, up to date: Triton 2.51's python stub
    writes __pycache__ into the version directory during the load whatever
    PYTHONDONTWRITEBYTECODE says (a change of the version's files)."""
    path.write_text(text)
    py_compile.compile(str(path), doraise=True)


def _successes(client: httpclient.InferenceServerClient, model: str) -> list[int]:
    stats = client.get_inference_statistics(model)["model_stats"]
    return [s["inference_stats"]["success"]["count"] for s in stats]


def _scenario(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The versions each load initialized, and what it left serving."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    markers = tmp_path / kind / "markers"
    markers.mkdir(parents=True)
    repo = tmp_path / kind / "repo"
    for version in (1, 2):
        (repo / "m" / str(version)).mkdir(parents=True)
        _write_model(repo / "m" / str(version) / "model.py", _model(1))
    (repo / "m" / "config.pbtxt").write_text(_pbtxt(markers))
    (repo / "e" / "1").mkdir(parents=True)
    (repo / "e" / "config.pbtxt").write_text(ENSEMBLE)
    seen: dict = {}
    with (
        run_either(kind, repo, "--model-control-mode=explicit") as server,
        httpclient.InferenceServerClient(server.http_url) as client,
    ):

        def step(label: str, model: str = "m", **kwargs) -> None:
            before = len(_inits(markers))
            client.load_model(model, **kwargs)
            seen[label] = sorted(_inits(markers)[before:])
            seen[label + ": ready"] = [client.is_model_ready("m", v) for v in "12"]

        step("first")
        _infer(client, "1")
        # Triton 2.51 records the statistics after the response (CI read 0 once).
        wait_until(lambda: _successes(client, "m")[0] == 1, "the success recorded")
        step("nothing changed")
        seen["statistics kept"] = _successes(client, "m")
        step("same config as an override", config=json.dumps(_config(markers)))
        step("back to the file")
        seen["statistics still kept"] = _successes(client, "m")
        step("the ensemble", "e")
        ensemble_input = httpclient.InferInput("IN", [1, 4], "FP32")
        ensemble_input.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        client.infer("e", [ensemble_input])
        step("the ensemble's model, unchanged")
        step("the ensemble again", "e")
        changed = _config(markers)
        changed["parameters"]["other"] = {"string_value": "x"}
        step("another config as an override", config=json.dumps(changed))
        seen["statistics after a build"] = _successes(client, "m")
        changed["version_policy"] = {"specific": {"versions": [2]}}
        step("only the policy changes", config=json.dumps(changed))
        # The version kept has the config it was loaded with (as in Triton).
        seen["policy shown"] = client.get_model_config("m")["version_policy"]
        step(
            "files",
            config=json.dumps(_config(markers)),
            files={"file:1/model.py": _model(2).encode()},
        )
        seen["output from the files"] = _infer(client, "1")
        step("back to the repository after files")
        seen["output from the repository"] = _infer(client, "1")
    return seen


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
def test_reload_keeps_unchanged_versions(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    both, one = [True, True], [False, True]
    assert _scenario(kind, tmp_path, monkeypatch) == {
        "first": ["1", "2"],
        "first: ready": both,
        # Nothing changed: both versions keep serving, statistics and all.
        "nothing changed": [],
        "nothing changed: ready": both,
        "statistics kept": [1, 0],
        # An override equal to the file's config changes nothing either, nor does
        # going back to the file.
        "same config as an override": [],
        "same config as an override: ready": both,
        "back to the file": [],
        "back to the file: ready": both,
        "statistics still kept": [1, 0],
        # Loading the ensemble finds its model loaded; loading either again
        # (nothing changed) builds no version of the model. (What happens to the
        # ensemble's own statistics varies from run to run on Triton 2.51.)
        "the ensemble": [],
        "the ensemble: ready": both,
        "the ensemble's model, unchanged": [],
        "the ensemble's model, unchanged: ready": both,
        "the ensemble again": [],
        "the ensemble again: ready": both,
        # A config that differs builds every version again.
        "another config as an override": ["1", "2"],
        "another config as an override: ready": both,
        "statistics after a build": [0, 0],
        # A version policy alone: version 2 is kept, version 1 unloaded.
        "only the policy changes": [],
        "only the policy changes: ready": one,
        "policy shown": {"all": {}},
        # A load with files builds what it serves; so does the next load from
        # the repository.
        "files": ["1"],
        "files: ready": [True, False],
        "output from the files": 2.0,
        "back to the repository after files": ["1", "2"],
        "back to the repository after files: ready": both,
        "output from the repository": 1.0,
    }
