"""Hypothesis strategies for the ensemble response-flow fuzz
(test_differential_ensemble_flow.py): requests to the ensembles of
tests/flowmodels.py, whose steps are the flow models.

A one-step ensemble gets a program as the flow-model fuzz draws it
(decoupled_strategies.programs). In a two-step ensemble the second step reads the
first one's TEXT as its PROGRAM, so the first step's program is drawn and each of
its responses is given a TEXT holding a program for the second step: one per
response of the first step, as a decoupled first step runs the second once per
response. A few responses instead carry no TEXT (the second step gets no input for
that response), an empty one or two values (a shape the second step's PROGRAM
[1] refuses), or text that is not JSON (the second step raises).
"""

from __future__ import annotations

import json
from typing import Any

from decoupled_strategies import Call, programs, rarely, with_options
from flowmodels import ENSEMBLES, ensemble_outputs
from hypothesis import strategies as st

# How a first-step response's TEXT feeds the second step. The last three fail the
# ensemble at once, as the second step's request is made (a missing input, a shape
# its PROGRAM [1] refuses); a program and text that is not JSON reach the second
# step's execute, which answers in turn (one instance, in order).
_SOON = ["program"] * 8 + ["not json"]
_AT_ONCE = ["absent", "empty", "two"]


@st.composite
def _second_step_text(
    draw: Any, model: str, at_once: bool, bls: bool
) -> tuple[str, list[str] | None]:
    """How a first-step response feeds the second step, and the TEXT it carries:
    a program for ``model`` (mostly), text that is not JSON or (``at_once``)
    nothing, nothing at all or two values."""
    shape = draw(st.sampled_from(_SOON + _AT_ONCE if at_once else _SOON))
    if shape in ("absent", "empty", "not json"):
        return shape, {"absent": None, "empty": [], "not json": ["a"]}[shape]
    program = json.dumps(draw(programs(model, bls=bls)), sort_keys=True)
    return shape, [program, "a"] if shape == "two" else [program]


@st.composite
def ensemble_programs(draw: Any, ensemble: str, bls: bool = False) -> dict[str, Any]:
    """A program for ``ensemble``'s first step, carrying the second step's; ``bls``:
    both steps' programs as a BLS call's target runs them (``programs``)."""
    models = ENSEMBLES[ensemble]
    program = draw(programs(models[0], bls=bls))
    if len(models) == 1:
        return program
    responses = [send["response"] for send in program["send"]]
    responses += program.get("returns", [])
    # Once a response has started the second step, an error of the ensemble made
    # at once (by the first step, or by the second step's request) races with
    # that step's answer, in Triton as in tritonx: whichever reaches the ensemble
    # first is its answer. Such programs are not generated: later responses carry
    # a second-step program (or text that is not JSON) and no report, and the
    # first step does not fail.
    started = False
    for spec in responses:
        if spec is None:
            continue
        if "error" in spec:
            if not started:
                continue
            spec.clear()
        shape, text = draw(_second_step_text(models[1], not started, bls))
        spec.pop("text", None)
        if text is not None:
            spec["text"] = text
        if started or not draw(rarely):  # a report is one more TEXT value
            spec.pop("report", None)
        started = started or shape in _SOON
    if started and program["end"] == "raise":
        program["end"] = "none"
        program.pop("message")
    return program


def _protocols(ensemble: str) -> list[str]:
    """Mostly a stream for a decoupled ensemble (the others refuse it)."""
    if any(model == "flow_decoupled" for model in ENSEMBLES[ensemble]):
        return ["grpc-stream"] * 6 + ["generate-stream", "grpc", "http"]
    return ["grpc-stream", "grpc", "grpc", "http", "http", "generate"]


@st.composite
def ensemble_calls(draw: Any) -> Call:
    ensemble = draw(st.sampled_from(sorted(ENSEMBLES)))
    protocol = draw(st.sampled_from(_protocols(ensemble)))
    call = Call(ensemble, protocol, draw(ensemble_programs(ensemble)))
    return with_options(draw, call, list(ensemble_outputs(ensemble)))
