"""Ensemble cases the ensemble config fuzz (test_ensemble_config_fuzz.py) found
tritonx answering otherwise than Triton 2.51, as a table run against tritonx and,
when TRITONX_REFERENCE_CMD is given, the reference:

* the order of an ensemble's outputs in an answer: Triton's walk of its hash map
  of the output names, not the config's order;
* an ensemble input without a data type: the ensemble's checks against its
  composing models come first ("inconsistent data type: TYPE_INVALID ..."), before
  the checks that fail a version ("must specify 'data_type'").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from config_diff import Case
from ensemble_strategies import COMPOSING
from serverutil import RunningServer, run_either
from shmutil import raw


def _ensemble(name: str, outputs: dict[str, str], e0_type: str = "TYPE_FP32") -> str:
    """E0, E1 -> cadd; ``outputs``: ensemble output -> cadd output it maps."""
    maps = " ".join(
        f'output_map {{ key: "{model}" value: "{tensor}" }}'
        for tensor, model in outputs.items()
    )
    outs = ", ".join(
        f'{{ name: "{tensor}" data_type: TYPE_FP32 dims: [ 4 ] }}' for tensor in outputs
    )
    e0_type_line = f"data_type: {e0_type} " if e0_type else ""
    return f"""
name: "{name}"
platform: "ensemble"
input [ {{ name: "E0" {e0_type_line}dims: [ 4 ] }},
        {{ name: "E1" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {outs} ]
ensemble_scheduling {{ step [ {{ model_name: "cadd" model_version: -1
  input_map {{ key: "INPUT0" value: "E0" }} input_map {{ key: "INPUT1" value: "E1" }}
  {maps} }} ] }}
"""


# name -> (ensemble outputs -> cadd outputs, the output names in an answer's order)
ORDER_CASES = {
    "sum_then_difference": ({"S": "OUTPUT0", "D": "OUTPUT1"}, ["D", "S"]),
    "difference_then_sum": ({"D": "OUTPUT1", "S": "OUTPUT0"}, ["S", "D"]),
    "long_names": ({"sum_of_both": "OUTPUT0", "a_difference": "OUTPUT1"},
                   ["a_difference", "sum_of_both"]),
    "many_letters": ({"Z": "OUTPUT0", "A": "OUTPUT1"}, ["A", "Z"]),
}  # fmt: skip


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repo: Path = tmp_path_factory.mktemp("ensemble_diff") / "repo"
    for name, (config, model) in COMPOSING.items():
        Case(name, f'name: "{name}"\n' + config, {"1/model.py": model}).write(repo)
    for name, (outputs, _) in ORDER_CASES.items():
        Case(name, _ensemble(name, outputs), {"1/.keep": ""}).write(repo)
    untyped = _ensemble("untyped_input", {"S": "OUTPUT0"}, e0_type="")
    Case("untyped_input", untyped, {"1/.keep": ""}).write(repo)
    with run_either(request.param, repo, "--model-control-mode=explicit") as running:
        yield running


def _infer(server: RunningServer, name: str) -> tuple[int, Any]:
    tensor = {"datatype": "FP32", "shape": [4], "data": [1.0] * 4}
    body = {"inputs": [{"name": n, **tensor} for n in ("E0", "E1")]}
    return raw(server, "POST", f"/v2/models/{name}/infer", body)


@pytest.mark.parametrize("case", sorted(ORDER_CASES))
def test_outputs_in_triton_order(served: RunningServer, case: str) -> None:
    status, body = raw(served, "POST", f"/v2/repository/models/{case}/load")
    assert status == 200, body
    status, body = _infer(served, case)
    assert status == 200, body
    assert [output["name"] for output in body["outputs"]] == ORDER_CASES[case][1]


def test_untyped_input_fails_the_ensemble_checks_first(served: RunningServer) -> None:
    status, body = raw(served, "POST", "/v2/repository/models/untyped_input/load")
    assert (status, body["error"]) == (
        400,
        "load failed for model 'untyped_input': in ensemble untyped_input, ensemble "
        "tensor E0: inconsistent data type: TYPE_INVALID is inferred from model "
        "untyped_input while TYPE_FP32 is inferred from model cadd\n",
    )
