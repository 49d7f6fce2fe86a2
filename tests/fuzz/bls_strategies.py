"""Hypothesis strategies for the BLS differential fuzz (test_differential_bls.py):
programs of BLS calls a Python model makes, with the flow models of
tests/flowmodels.py as their targets.

``bls_prog`` (default policy, ``async def execute``) reads a JSON program from its
PROGRAM input: a list of calls, each an ``InferenceRequest`` it builds and runs
with ``exec`` or ``await async_exec``, decoupled or not, and reports in its TEXT
output what each call gave: every response (its error's message and code, or its
outputs' names, types, shapes and values) or the exception the call raised. The
calls target the decoupled and the default-policy flow model (whose own program
rides in the call's PROGRAM input, drawn by decoupled_strategies), three
ensembles of them (one step of each and two default-policy steps; programs by
ensemble_flow_strategies), a model that does not exist, and versions that do not; their inputs are right, missing,
misnamed, of the wrong type or one too many; they ask for the config's outputs,
others or none, with or without an id and parameters.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from decoupled_strategies import programs
from ensemble_flow_strategies import ensemble_programs
from hypothesis import strategies as st

MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


def described(response):
    if response.has_error():
        error = response.error()
        code = error.code()
        return {"error": error.message(), "code": [int(code), str(code), repr(code)]}
    outputs = []
    for tensor in response.output_tensors():
        array = tensor.as_numpy()
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v.item()
                  for v in array.ravel()]
        outputs.append([tensor.name(), array.dtype.str, list(array.shape), values])
    return {"outputs": outputs}


def tensors(call):
    text = json.dumps(call.get("nested", {"send": [], "end": "none"}))
    program = np.array([text.encode()], dtype=np.object_)
    kind = call["inputs"]
    if kind == "none":
        return []
    if kind == "wrong_name":
        return [pb_utils.Tensor("PROGRAMME", program)]
    if kind == "wrong_type":
        return [pb_utils.Tensor("PROGRAM", np.array([1], dtype=np.int32))]
    found = [pb_utils.Tensor("PROGRAM", program)]
    if kind == "extra":
        found.append(pb_utils.Tensor("EXTRA", np.array([1], dtype=np.int32)))
    return found


class TritonPythonModel:
    async def run(self, call):
        options = {}
        if "id" in call:
            options["request_id"] = call["id"]
        if "parameters" in call:
            options["parameters"] = call["parameters"]
        request = pb_utils.InferenceRequest(
            model_name=call["model"], model_version=call["version"],
            inputs=tensors(call), requested_output_names=call["requested"],
            **options)
        decoupled = call["decoupled"]
        if call["async"]:
            result = await request.async_exec(decoupled=decoupled)
        else:
            result = request.exec(decoupled=decoupled)
        responses = list(result) if decoupled else [result]
        return [described(response) for response in responses]

    async def execute(self, requests):
        answers = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, "PROGRAM")
            report = []
            for call in json.loads(tensor.as_numpy().ravel()[0]):
                try:
                    report.append(await self.run(call))
                except Exception as error:
                    report.append(f"{type(error).__name__}: {error}")
            text = json.dumps(report, sort_keys=True).encode()
            out = pb_utils.Tensor("TEXT", np.array([text], dtype=np.object_))
            answers.append(pb_utils.InferenceResponse([out]))
        return answers
"""

CONFIG = """
name: "bls_prog"
backend: "python"
max_batch_size: 0
input [ { name: "PROGRAM" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""


def write_model(repo: Path) -> None:
    (repo / "bls_prog" / "1").mkdir(parents=True)
    (repo / "bls_prog" / "config.pbtxt").write_text(textwrap.dedent(CONFIG))
    (repo / "bls_prog" / "1" / "model.py").write_text(MODEL)


# The ensembles whose answers reach a BLS caller as their steps' do: a decoupled
# first step feeding a second one may fail after data responses, which a Triton
# 2.51 BLS caller waits for forever (see ``programs``).
ENSEMBLE_TARGETS = ["ens_p", "ens_d", "ens_pp"]
TARGETS = ["flow_decoupled", "flow_decoupled", "flow_plain", "flow_plain", "missing"]
TARGETS += ENSEMBLE_TARGETS


@st.composite
def calls(draw: Any) -> dict[str, Any]:
    model = draw(st.sampled_from(TARGETS))
    call: dict[str, Any] = {
        "model": model,
        "version": draw(st.sampled_from([-1, -1, -1, 1, 2])),
        "inputs": draw(
            st.sampled_from(
                ["program"] * 6 + ["none", "wrong_name", "wrong_type", "extra"]
            )
        ),
        "requested": draw(
            st.lists(st.sampled_from(["OUT", "TEXT", "NOPE"]), max_size=2, unique=True)
        ),
        "decoupled": draw(st.booleans()),
        "async": draw(st.booleans()),
    }
    if model in ENSEMBLE_TARGETS:
        call["nested"] = draw(ensemble_programs(model, bls=True))
    elif model != "missing":
        call["nested"] = draw(programs(model, bls=True))
    if draw(st.integers(0, 3)) == 0:
        call["id"] = draw(st.sampled_from(["b1", ""]))
    if draw(st.integers(0, 3)) == 0:
        call["parameters"] = {"p": draw(st.sampled_from([1, "s", True]))}
    return call


def bls_programs() -> Any:
    return st.lists(calls(), min_size=1, max_size=3)


def http_body(program: list[dict[str, Any]]) -> bytes:
    tensor = {"name": "PROGRAM", "shape": [1], "datatype": "BYTES"}
    body = {"inputs": [{**tensor, "data": [json.dumps(program)]}]}
    return json.dumps(body).encode()
