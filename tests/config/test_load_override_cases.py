"""Load overrides the load-override fuzz (test_load_override_fuzz.py) found tritonx
answering otherwise, run on tritonx and, with TRITONX_REFERENCE_CMD, on Triton 2.51:
a sequence control of a kind no release defines (a JSON override can carry any
number) is left alone, as Triton's batcher looks only for the kinds it knows; the
model loads and its config shows the control as given."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from config_diff import http_call
from serverutil import run_either

MODEL = (
    b"class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"
)
CONFIG = {
    "name": "unknown_kind",
    "backend": "python",
    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": ["4"]}],
    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": ["4"]}],
    "sequence_batching": {
        "control_input": [{"name": "START", "control": [{"kind": 4}]}]
    },
}


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
def test_an_unknown_control_kind_is_left_alone(tmp_path: Path, kind: str) -> None:
    parameters = {
        "config": json.dumps(CONFIG),
        "file:1/model.py": base64.b64encode(MODEL).decode(),
    }
    body = json.dumps({"parameters": parameters}).encode()
    with run_either(kind, tmp_path, "--model-control-mode=explicit") as server:
        path = "/v2/repository/models/unknown_kind/load"
        assert http_call(server, "POST", path, body) == (200, None)
        status, config = http_call(server, "GET", "/v2/models/unknown_kind/config")
        assert status == 200
        (control_input,) = config["sequence_batching"]["control_input"]
        assert control_input["control"][0]["kind"] == 4
