"""L0_model_config's ensemble cases, tritonx against Triton 2.51.

Ensembles over small Python models, each wrong in one way Triton's QA checks (a
missing step, model name or map; a block an ensemble may not have; a version of a
composing model that is not there; a cycle; a tensor that goes nowhere; two
decoupled branches meeting), and a few that load although they look odd (a
composing model's output left unmapped, batching and non-batching steps whose
shapes agree, an ensemble inside an ensemble). Both servers (EXPLICIT mode, one
repository) load every ensemble and must give the same observation
(config_diff.observe): the load's status, then the served config and metadata, or
the error and the repository index's entries. Errors Triton finds while polling
the repository reach the client as "failed to poll" and the reason goes to the
log: ``EXPECTED`` names the reason, looked for in the answer or the log of each
server (of tritonx alone without the reference). The cases already in
tests/ensemble (unknown model, data type and shape conflicts, batch size, bad map
keys, unused inputs/outputs/tensors, a step output produced twice, branches of two
decoupled models) are not repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from config_diff import MODEL_PY, Case, write_repository
from serverutil import RunningServer
from test_config_differential import Servers, observe_pair, server_pair


def tensors(kind: str, dtype: str, dims: str, names: list[str]) -> str:
    body = ", ".join(
        f'{{ name: "{n}" data_type: {dtype} dims: [ {dims} ] }}' for n in names
    )
    return f"{kind} [ {body} ]\n"


def python_model(
    mbs: int,
    inputs: list[str],
    outputs: list[str],
    dims: str = "16",
    dtype: str = "TYPE_FP32",
    extra: str = "",
) -> str:
    return (
        f'backend: "python"\nmax_batch_size: {mbs}\n'
        + tensors("input", dtype, dims, inputs)
        + tensors("output", dtype, dims, outputs)
        + extra
    )


def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    """One ensemble step (an empty model name or map is left out)."""
    parts = [f'model_name: "{model}" model_version: -1'] if model else []
    parts += [f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()]
    parts += [f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
    return "{ " + " ".join(parts) + " }"


def ensemble(
    steps: list[str] | None,
    inputs: str = tensors("input", "TYPE_FP32", "16", ["data"]),
    outputs: str = tensors("output", "TYPE_FP32", "16", ["prob"]),
    mbs: int = 2,
    extra: str = "",
) -> str:
    """An ensemble's config; ``steps`` None: no ensemble_scheduling block."""
    text = f'platform: "ensemble"\nmax_batch_size: {mbs}\n' + inputs + outputs + extra
    if steps is not None:
        text += "ensemble_scheduling { step [ " + ", ".join(steps) + " ] }\n"
    return text


ONE = "one"  # INPUT0 -> OUTPUT0, FP32 [16], batching up to 4
THREE_OUT = "three_out"  # INPUT0..2 -> OUTPUT0..2
FOUR_IN = "four_in"  # INPUT0..3 -> OUTPUT0..3
NOBATCH = "nobatch"  # INPUT0 -> OUTPUT0, FP32 [-1, 16], no batching
SIMPLE = "simple"  # INT32 INPUT0/1 -> OUTPUT0/1, versions 1 and 3 served
REPEAT = "repeat"  # decoupled, IN/DELAY/WAIT -> OUT/IDX

VERSIONS_1_3 = {"1/model.py": MODEL_PY, "3/model.py": MODEL_PY}
SIMPLE_IO = {"INPUT0": "INPUT0", "INPUT1": "INPUT1"}
SIMPLE_OUT = {"OUTPUT0": "OUTPUT0", "OUTPUT1": "OUTPUT1"}
ONE_STEP = step(ONE, {"INPUT0": "data"}, {"OUTPUT0": "prob"})
INT_IO = tensors("input", "TYPE_INT32", "16", ["INPUT0", "INPUT1"])
INT_OUT = tensors("output", "TYPE_INT32", "16", ["OUTPUT0", "OUTPUT1"])


def versioned(version: int, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    return step(SIMPLE, inputs, outputs).replace(
        "model_version: -1", f"model_version: {version}"
    )


THREE = {f"INPUT{i}": "data" for i in range(3)}
THREE_TEMPS = {f"OUTPUT{i}": f"t{i}" for i in range(3)}

COMPOSING = [
    Case(ONE, python_model(4, ["INPUT0"], ["OUTPUT0"])),
    Case(THREE_OUT, python_model(4, list(THREE), list(THREE_TEMPS))),
    Case(
        FOUR_IN,
        python_model(
            4, [f"INPUT{i}" for i in range(4)], [f"OUTPUT{i}" for i in range(4)]
        ),
    ),
    Case(NOBATCH, python_model(0, ["INPUT0"], ["OUTPUT0"], dims="-1, 16")),
    Case(
        SIMPLE,
        python_model(
            8,
            ["INPUT0", "INPUT1"],
            ["OUTPUT0", "OUTPUT1"],
            dtype="TYPE_INT32",
            extra="version_policy { all { } }\n",
        ),
        files=VERSIONS_1_3,
    ),
    Case(
        REPEAT,
        'backend: "python"\nmax_batch_size: 0\n'
        "model_transaction_policy { decoupled: true }\n"
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] },\n'
        '  { name: "DELAY" data_type: TYPE_UINT32 dims: [ -1 ] },\n'
        '  { name: "WAIT" data_type: TYPE_UINT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] },\n'
        '  { name: "IDX" data_type: TYPE_UINT32 dims: [ 1 ] } ]\n',
    ),
]

# A step whose config has tensors only: its auto_complete_config sets
# max_batch_size 4 and dynamic batching (an ensemble has no scheduler to clash).
AUTO_STEP_PY = (
    MODEL_PY
    + """
    @staticmethod
    def auto_complete_config(config):
        config.set_max_batch_size(4)
        config.set_dynamic_batching()
        config.add_input({"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]})
        config.add_output({"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]})
        return config
"""
)
COMPOSING.append(
    Case(
        "auto_step",
        python_model(0, ["INPUT0"], ["OUTPUT0"], dims="4").replace(
            "max_batch_size: 0\n", ""
        ),
        files={"1/model.py": AUTO_STEP_PY},
    )
)

REPEAT_IN = {"IN": "IN", "DELAY": "DELAY", "WAIT": "WAIT"}
FOUR_FROM_TEMPS = {"INPUT0": "t0", "INPUT1": "t1", "INPUT2": "t2"}

ENSEMBLES = [
    Case(
        "e_cycle",
        ensemble([step("e_cycle_back", {"input": "data"}, {"output": "prob"})]),
    ),
    Case(
        "e_cycle_back",
        ensemble(
            [step("e_cycle", {"data": "input"}, {"prob": "output"})],
            inputs=tensors("input", "TYPE_FP32", "16", ["input"]),
            outputs=tensors("output", "TYPE_FP32", "16", ["output"]),
        ),
    ),
    Case(
        "e_self_cycle",
        ensemble(
            [
                step(ONE, {"INPUT0": "data"}, {"OUTPUT0": "t"}),
                step("e_self_cycle", {"data": "t"}, {"prob": "prob"}),
            ]
        ),
    ),
    Case("e_no_scheduling", ensemble(None)),
    Case("e_has_backend", ensemble(None, extra='backend: "onnxruntime"\n')),
    Case(
        "e_instance_group",
        ensemble([ONE_STEP], extra="instance_group [ { kind: KIND_CPU } ]\n"),
    ),
    Case(
        "e_warmup",
        ensemble([ONE_STEP], extra='model_warmup [ { name: "w" batch_size: 1 } ]\n'),
    ),
    Case(
        "e_optimization",
        ensemble([ONE_STEP], extra="optimization { priority: PRIORITY_MAX }\n"),
    ),
    Case("e_no_step", ensemble([])),
    Case(
        "e_no_step_2",
        ensemble(None, extra="ensemble_scheduling { }\n"),
    ),
    Case(
        "e_no_model_name",
        ensemble(
            [
                step(ONE, {"INPUT0": "data"}, {"OUTPUT0": "t"}),
                step("", {"INPUT0": "t"}, {"OUTPUT0": "prob"}),
            ]
        ),
    ),
    Case("e_no_input_map", ensemble([step(ONE, {}, {"OUTPUT0": "prob"})])),
    Case("e_no_output_map", ensemble([step(ONE, {"INPUT0": "data"}, {})])),
    Case(
        "e_version_missing",
        ensemble([versioned(2, SIMPLE_IO, SIMPLE_OUT)], INT_IO, INT_OUT, mbs=8),
    ),
    Case(
        "e_version_missing_2",
        ensemble(
            [
                step(SIMPLE, SIMPLE_IO, {"OUTPUT0": "a", "OUTPUT1": "b"}),
                versioned(
                    2,
                    {"INPUT0": "a", "INPUT1": "b"},
                    SIMPLE_OUT,
                ),
            ],
            INT_IO,
            INT_OUT,
            mbs=8,
        ),
    ),
    Case(
        "e_version_present",
        ensemble(
            [versioned(3, SIMPLE_IO, SIMPLE_OUT)],
            INT_IO,
            INT_OUT,
            mbs=8,
        ),
    ),
    Case(
        "e_unmapped_input",
        ensemble(
            [
                step(THREE_OUT, THREE, THREE_TEMPS),
                step(
                    FOUR_IN,
                    {"INPUT1": "t0", "INPUT2": "t1", "INPUT3": "t2"},
                    {"OUTPUT0": "prob"},
                ),
            ]
        ),
    ),
    Case(
        "e_output_not_written",
        ensemble(
            [
                step(ONE, {"INPUT0": "data"}, {"OUTPUT0": "t3"}),
                step(ONE, {"INPUT0": "prob_2"}, {"OUTPUT0": "prob_2"}),
                step(THREE_OUT, THREE, THREE_TEMPS),
                step(FOUR_IN, FOUR_FROM_TEMPS | {"INPUT3": "t3"}, {"OUTPUT0": "prob"}),
            ],
            outputs=tensors("output", "TYPE_FP32", "16", ["prob", "prob_2"]),
        ),
    ),
    Case(
        "e_input_never_produced",
        ensemble(
            [
                step(ONE, {"INPUT0": "data"}, {"OUTPUT0": "t3"}),
                step(ONE, {"INPUT0": "t5"}, {"OUTPUT0": "t6"}),
                step(THREE_OUT, {f"INPUT{i}": "t3" for i in range(3)}, THREE_TEMPS),
                step(FOUR_IN, FOUR_FROM_TEMPS | {"INPUT3": "t3"}, {"OUTPUT0": "prob"}),
            ]
        ),
    ),
    Case(
        # The same input_map key twice: the later value wins.
        "e_input_key_twice",
        ensemble(
            [
                step(ONE, {"INPUT0": "data"}, {"OUTPUT0": "t3"}),
                step(ONE, {"INPUT0": "t3"}, {"OUTPUT0": "t5"}),
                step(THREE_OUT, THREE, THREE_TEMPS),
                step(FOUR_IN, FOUR_FROM_TEMPS | {"INPUT3": "t5"}, {"OUTPUT0": "prob"})[
                    :-1
                ]
                + 'input_map { key: "INPUT3" value: "t3" } }',
            ]
        ),
    ),
    Case(
        "e_decoupled_branches",
        ensemble(
            [
                step(REPEAT, REPEAT_IN, {"OUT": "OUT"}),
                step(REPEAT, REPEAT_IN, {"IDX": "IDX"}),
            ],
            inputs='input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] },\n'
            '  { name: "DELAY" data_type: TYPE_UINT32 dims: [ -1 ] },\n'
            '  { name: "WAIT" data_type: TYPE_UINT32 dims: [ 1 ] } ]\n',
            outputs='output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] },\n'
            '  { name: "IDX" data_type: TYPE_UINT32 dims: [ 1 ] } ]\n',
            mbs=0,
        ),
    ),
    # These load.
    Case(
        "e_unmapped_output",
        ensemble([step(THREE_OUT, THREE, {"OUTPUT0": "prob"})]),
    ),
    Case(
        "e_batch_then_nobatch",
        ensemble(
            [
                step(ONE, {"INPUT0": "data"}, {"OUTPUT0": "t"}),
                step(NOBATCH, {"INPUT0": "t"}, {"OUTPUT0": "prob"}),
            ]
        ),
    ),
    Case(
        "e_nobatch_then_batch",
        ensemble(
            [
                step(NOBATCH, {"INPUT0": "data"}, {"OUTPUT0": "t"}),
                step(ONE, {"INPUT0": "t"}, {"OUTPUT0": "prob"}),
            ],
            inputs=tensors("input", "TYPE_FP32", "4, 16", ["data"]),
            outputs=tensors("output", "TYPE_FP32", "4, 16", ["prob"]),
            mbs=0,
        ),
    ),
    Case(
        "e_auto_completed_steps",
        ensemble(
            [
                step("auto_step", {"INPUT0": "data"}, {"OUTPUT0": "t"}),
                step("auto_step", {"INPUT0": "t"}, {"OUTPUT0": "prob"}),
            ],
            inputs=tensors("input", "TYPE_FP32", "4", ["data"]),
            outputs=tensors("output", "TYPE_FP32", "4", ["prob"]),
            mbs=0,
        ),
    ),
    Case("e_inner", ensemble([ONE_STEP])),
    Case(
        "e_outer",
        ensemble([step("e_inner", {"data": "data"}, {"prob": "prob"})]),
    ),
]

# Triton's QA's reason for each failing case (in the load's answer or the log);
# None: the ensemble loads.
EXPECTED: dict[str, str | None] = {
    "e_cycle": (
        "circular dependency between ensembles: e_cycle -> ... -> e_cycle_back -> "
        "e_cycle"
    ),
    "e_self_cycle": (
        "circular dependency between ensembles: e_self_cycle -> ... -> "
        "e_self_cycle -> e_self_cycle"
    ),
    "e_no_scheduling": (
        "ensemble scheduling must be set for ensemble e_no_scheduling whose "
        "platform is ensemble"
    ),
    "e_has_backend": (
        "Ensemble model 'e_has_backend' must have platform type 'ensemble' and "
        "empty backend type"
    ),
    "e_instance_group": (
        "instance group should not be specified for ensemble 'e_instance_group'"
    ),
    "e_warmup": "model_warmup can not be specified for ensemble 'e_warmup'",
    "e_optimization": (
        "optimization should not be specified for ensemble 'e_optimization'"
    ),
    "e_no_step": "must specify 'step' for ensemble 'e_no_step'",
    "e_no_step_2": "must specify 'step' for ensemble 'e_no_step_2'",
    "e_no_model_name": "must specify 'model_name' in step 1 of ensemble 'e_no_model_name'",
    "e_no_input_map": "must specify 'input_map' in step 0 of ensemble 'e_no_input_map'",
    "e_no_output_map": "must specify 'output_map' in step 0 of ensemble 'e_no_output_map'",
    "e_version_missing": (
        "ensemble 'e_version_missing' depends on 'simple' whose required version 2 "
        "is not loaded"
    ),
    "e_version_missing_2": (
        "ensemble 'e_version_missing_2' depends on 'simple' whose required version "
        "2 is not loaded"
    ),
    "e_version_present": None,
    "e_unmapped_input": (
        "in ensemble e_unmapped_input, input INPUT0 in model four_in is not mapped "
        "to any ensemble tensors"
    ),
    "e_output_not_written": (
        "output 'prob_2' for ensemble 'e_output_not_written' is not written"
    ),
    "e_input_never_produced": (
        # (QA accepts t5 or t6, whichever its graph walk meets first.)
        "ensemble tensor 't5' is unused in ensemble 'e_input_never_produced'"
    ),
    "e_input_key_twice": "ensemble tensor 't5' is unused in ensemble 'e_input_key_twice'",
    "e_decoupled_branches": (
        "in ensemble e_decoupled_branches, step of model 'e_decoupled_branches' "
        "receives inputs originated from different decoupled models"
    ),
    "e_unmapped_output": None,
    "e_batch_then_nobatch": None,
    "e_nobatch_then_batch": None,
    "e_outer": None,
    "e_auto_completed_steps": None,
}

assert EXPECTED.keys() <= {case.name for case in ENSEMBLES}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    repo = tmp_path_factory.mktemp("qa_ensemble_config") / "repo"
    write_repository(repo, COMPOSING + ENSEMBLES)
    with server_pair(repo) as both:
        yield both


def _reason_given(server: RunningServer, seen: dict[str, Any], reason: str) -> bool:
    return reason in (seen.get("error") or "") or server.wait_for_log(reason, 15)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ensemble_config_case(servers: Servers, name: str) -> None:
    ours, theirs = observe_pair(servers, name)
    reason = EXPECTED[name]
    if reason is None:
        assert ours["load"] == 200, ours
        assert ours["config"][0] == 200
    else:
        assert ours["load"] != 200, ours
        assert _reason_given(servers.ours, ours, reason), (ours, reason)
    if theirs is not None:
        assert servers.reference is not None
        if reason is not None:
            assert _reason_given(servers.reference.server, theirs, reason), theirs
        assert ours == theirs
