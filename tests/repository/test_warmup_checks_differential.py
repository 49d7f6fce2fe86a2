"""A warmup sample's checks, in Triton's order, through the load API: an
instance is initialized first (a model.py that fails there is named before any
sample's fault), then each sample in turn is checked (variable-size dims, a data
source), its data made and its request validated, before the next sample is
looked at. The load-override fuzz (tests/config/test_load_override_fuzz.py) found
tritonx checking every sample's dims with the config, before initialize. Each
case runs on tritonx and, with TRITONX_REFERENCE_CMD, on Triton 2.51, which must
fail the load with the same message.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
from serverutil import RunningServer, run_either

RAISES = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("refusing to load")
"""
LOADS = """
class TritonPythonModel:
    def execute(self, requests):
        return []
"""
IO = """
input [ { name: "IN0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def _sample(name: str, value: str) -> str:
    return f'{{ name: "{name}" batch_size: 1 inputs {{ key: "IN0" value: {{ {value} }} }} }}'


VARIABLE = _sample("variable", "data_type: TYPE_FP32 dims: [ -1 ] zero_data: true")
NO_SOURCE = _sample("no source", "data_type: TYPE_FP32 dims: [ 4 ]")
WRONG_TYPE = _sample("wrong type", "data_type: TYPE_INT64 dims: [ 4 ] zero_data: true")
FAILED = "load failed for model '{}': version 1 is at UNAVAILABLE state: {}"
CASES = {
    # name: (model.py, warmup samples, the reason the version failed)
    "initialize_first": (
        RAISES,
        [VARIABLE],
        "Internal: RuntimeError: refusing to load\n\nAt:\n  ",  # then model.py's frame
    ),
    "variable_dims": (
        LOADS,
        [VARIABLE],
        "Invalid argument: warmup setting expects all variable-size dimensions are "
        "specified for input 'IN0'",
    ),
    "no_data_source": (
        LOADS,
        [NO_SOURCE],
        "Invalid argument: [request id: <id_unknown>] warmup setting expects input "
        "'IN0' to have input_data_type set",
    ),
    "first_sample_first": (
        LOADS,
        [WRONG_TYPE, VARIABLE],
        "Invalid argument: [request id: <id_unknown>] inference input 'IN0' "
        "data-type is 'INT64', but model 'first_sample_first' expects 'FP32'",
    ),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("warmup_checks")
    for name, (model, samples, _) in CASES.items():
        (root / name / "1").mkdir(parents=True)
        config = f'name: "{name}"\nbackend: "python"\n{IO}'
        config += f"model_warmup [ {', '.join(samples)} ]\n"
        (root / name / "config.pbtxt").write_text(config)
        (root / name / "1" / "model.py").write_text(model)
    return root


def _load(server: RunningServer, name: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        conn.request("POST", f"/v2/repository/models/{name}/load")
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read()).get("error", "")
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
def test_warmup_checks_follow_initialize_and_go_sample_by_sample(
    repo: Path, kind: str
) -> None:
    with run_either(kind, repo, "--model-control-mode=explicit") as server:
        for name, (_, _, reason) in CASES.items():
            status, error = _load(server, name)
            assert status == 400, error
            assert error.startswith(FAILED.format(name, reason)), error
