"""L0_model_config's Python-backend auto-complete cases, tritonx against Triton 2.51.

Each case is a Python model whose ``auto_complete_config`` adds tensors, sets the
batch size, the scheduler or the transaction policy, next to a config.pbtxt that
agrees, disagrees or leaves things out. Both servers (EXPLICIT mode, one
repository) load every case and must give the same observation
(config_diff.observe): the load's status, then the served config and metadata, or
the error and the repository index's entries. Without the reference the cases
are checked against what Triton's QA expects (``EXPECTED``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from config_diff import Case, write_repository
from test_config_differential import Servers, observe_pair, server_pair

HEAD = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
"""
TAIL = """
    def execute(self, requests):
        return [pb_utils.InferenceResponse([]) for _ in requests]
"""


def tensor(name: str | None, dtype: str | None = "TYPE_FP32", **extra: Any) -> str:
    """A tensor dict as the model's source writes it (None: the key left out)."""
    entry: dict[str, Any] = {}
    if name is not None:
        entry["name"] = name
    if dtype is not None:
        entry["data_type"] = dtype
    entry.update({"dims": [4]} if "dims" not in extra else {})
    entry.update({k: v for k, v in extra.items() if v is not None})
    return repr(entry)


def model_py(
    mbs: int = 0,
    inputs: tuple[str, ...] | None = None,
    outputs: tuple[str, ...] | None = None,
    extra: tuple[str, ...] = (),
    returns: bool = True,
) -> dict[str, str]:
    """Version 1's model.py whose auto_complete_config sets ``mbs``, runs the
    ``extra`` calls, adds the tensors (default: INPUT0/1, OUTPUT0/1, FP32 [4])."""
    if inputs is None:
        inputs = (tensor("INPUT0"), tensor("INPUT1"))
    if outputs is None:
        outputs = (tensor("OUTPUT0"), tensor("OUTPUT1"))
    lines = [f"config.set_max_batch_size({mbs})", *extra]
    lines += [f"config.add_input({t})" for t in inputs]
    lines += [f"config.add_output({t})" for t in outputs]
    if returns:
        lines.append("return config")
    body = "".join(f"        {line}\n" for line in lines)
    return {"1/model.py": HEAD + body + TAIL}


def io(
    in1: str = "TYPE_FP32 dims: [ 4 ]",
    out0: str = "TYPE_FP32 dims: [ 4 ]",
    out1: str = "TYPE_FP32 dims: [ 4 ]",
) -> str:
    """The config's two inputs and two outputs (INPUT0 is always FP32 [4])."""
    return (
        'backend: "python"\n'
        'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },\n'
        f'  {{ name: "INPUT1" data_type: {in1} }} ]\n'
        f'output [ {{ name: "OUTPUT0" data_type: {out0} }},\n'
        f'  {{ name: "OUTPUT1" data_type: {out1} }} ]\n'
    )


DECOUPLED = "config.set_model_transaction_policy(dict(decoupled=True))"

CASES = [
    # The config and the model disagree.
    Case("ac_conflicting_mbs", io() + "max_batch_size: 6\n", model_py(4)),
    Case(
        "ac_conflicting_sequence",
        io() + "sequence_batching { }\n",
        model_py(4, extra=("config.set_dynamic_batching()",)),
    ),
    Case("ac_input_mismatch_dtype", io(in1="TYPE_INT32 dims: [ 4 ]"), model_py()),
    Case("ac_input_mismatch_dims", io(in1="TYPE_FP32 dims: [ 16 ]"), model_py()),
    Case("ac_output_mismatch_dtype", io(out0="TYPE_INT32 dims: [ 4 ]"), model_py()),
    Case("ac_output_mismatch_dims", io(out1="TYPE_FP32 dims: [ 16 ]"), model_py()),
    # The model's tensors lack a property or have one too many.
    Case(
        "ac_input_no_dtype",
        io(),
        model_py(inputs=(tensor("INPUT0", None), tensor("INPUT1"))),
    ),
    Case(
        "ac_input_no_dims",
        io(),
        model_py(
            inputs=(tensor("INPUT0"), "{'name': 'INPUT1', 'data_type': 'TYPE_FP32'}")
        ),
    ),
    Case("ac_input_no_name", io(), model_py(inputs=(tensor("INPUT0"), tensor(None)))),
    Case(
        "ac_input_extra_key",
        io(),
        model_py(inputs=(tensor("INPUT0"), tensor("INPUT1", is_shape_tensor=True))),
    ),
    Case(
        "ac_output_no_dtype",
        io(),
        model_py(outputs=(tensor("OUTPUT0", None), tensor("OUTPUT1"))),
    ),
    Case(
        "ac_output_no_dims",
        io(),
        model_py(
            outputs=(tensor("OUTPUT0"), "{'name': 'OUTPUT1', 'data_type': 'TYPE_FP32'}")
        ),
    ),
    Case(
        "ac_output_no_name", io(), model_py(outputs=(tensor(None), tensor("OUTPUT1")))
    ),
    Case(
        "ac_output_extra_key",
        io(),
        model_py(outputs=(tensor("OUTPUT0"), tensor("OUTPUT1", optional=True))),
    ),
    Case("ac_no_return", io(), model_py(returns=False)),
    Case(
        "ac_policy_bad_key",
        io(),
        model_py(4, extra=("config.set_model_transaction_policy({'bogus': 1})",)),
    ),
    Case(
        "ac_policy_mismatch",
        io() + "model_transaction_policy { decoupled: false }\n",
        model_py(4, extra=(DECOUPLED,)),
    ),
    # Loads: auto-complete fills in what the config leaves out.
    Case(
        "ac_dynamic_batching",
        io(),
        model_py(4, extra=("config.set_dynamic_batching()",)),
    ),
    Case(
        "ac_dynamic_batching_kept",
        io() + "max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 4 ] }\n",
        model_py(4, extra=("config.set_dynamic_batching()",)),
    ),
    Case("ac_empty_config", "", model_py()),
    Case(
        "ac_incomplete_input",
        'input [ { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]\n',
        model_py(inputs=(tensor("INPUT0"),)),
    ),
    Case(
        "ac_incomplete_output",
        'output [ { name: "OUTPUT0" data_type: TYPE_FP32 }, '
        '{ name: "OUTPUT1" dims: [ 4 ] } ]\n',
        model_py(),
    ),
    Case("ac_policy_decoupled", io(), model_py(4, extra=(DECOUPLED,))),
    Case(
        "ac_policy_not_decoupled",
        io(),
        model_py(
            4, extra=("config.set_model_transaction_policy(dict(decoupled=False))",)
        ),
    ),
    Case(
        "ac_policy_kept",
        io() + "model_transaction_policy { decoupled: true }\n",
        model_py(4, extra=(DECOUPLED,)),
    ),
    Case(
        "ac_optional_input",
        'input [ { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]\n',
        model_py(inputs=(tensor("INPUT0", optional=True),)),
    ),
    Case(
        "ac_unknown_input",
        'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },\n'
        '  { name: "INPUT_UNKNOWN" data_type: TYPE_FP32 dims: [ 4 ] } ]\n',
        model_py(),
    ),
    Case(
        "ac_unknown_output",
        'output [ { name: "OUTPUT_UNKNOWN" data_type: TYPE_FP32 dims: [ 4 ] },\n'
        '  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]\n',
        model_py(),
    ),
]

# What Triton's QA expects: a part of the load error, or (for the loads) the
# served config's fields.
EXPECTED: dict[str, str | dict[str, Any]] = {
    "ac_conflicting_mbs": (
        "configuration specified max_batch_size 6, but in auto-complete-config "
        "function for model 'ac_conflicting_mbs' specified max_batch_size 4"
    ),
    "ac_conflicting_sequence": (
        "Configuration specified scheduling_choice as 'sequence_batching', but "
        "auto-complete-config function for model 'ac_conflicting_sequence' tries to "
        "set scheduling_choice as 'dynamic_batching'"
    ),
    "ac_input_mismatch_dtype": (
        "unable to load model 'ac_input_mismatch_dtype', configuration expects "
        "datatype TYPE_INT32 for input 'INPUT1', model provides TYPE_FP32"
    ),
    "ac_input_mismatch_dims": (
        "model 'ac_input_mismatch_dims', tensor 'INPUT1': the model expects dims [4] "
        "but the model configuration specifies dims [16]"
    ),
    "ac_output_mismatch_dtype": (
        "unable to load model 'ac_output_mismatch_dtype', configuration expects "
        "datatype TYPE_INT32 for output 'OUTPUT0', model provides TYPE_FP32"
    ),
    "ac_output_mismatch_dims": (
        "model 'ac_output_mismatch_dims', tensor 'OUTPUT1': the model expects dims "
        "[4] but the model configuration specifies dims [16]"
    ),
    "ac_input_no_dtype": (
        "input 'INPUT0' in auto-complete-config function for model "
        "'ac_input_no_dtype' is missing 'data_type' property."
    ),
    "ac_input_no_dims": (
        "input 'INPUT1' in auto-complete-config function for model "
        "'ac_input_no_dims' is missing 'dims' property."
    ),
    "ac_input_no_name": (
        "input in auto-complete-config function for model 'ac_input_no_name' is "
        "missing 'name' property."
    ),
    "ac_input_extra_key": (
        "input 'INPUT1' in auto-complete-config function for model "
        "'ac_input_extra_key' contains property other than 'name', 'data_type', "
        "'dims' and 'optional'."
    ),
    "ac_output_no_dtype": (
        "output 'OUTPUT0' in auto-complete-config function for model "
        "'ac_output_no_dtype' is missing 'data_type' property."
    ),
    "ac_output_no_dims": (
        "output 'OUTPUT1' in auto-complete-config function for model "
        "'ac_output_no_dims' is missing 'dims' property."
    ),
    "ac_output_no_name": (
        "output in auto-complete-config function for model 'ac_output_no_name' is "
        "missing 'name' property."
    ),
    "ac_output_extra_key": (
        "output 'OUTPUT1' in auto-complete-config function for model "
        "'ac_output_extra_key' contains property other than 'name', 'data_type' and "
        "'dims'."
    ),
    "ac_no_return": (
        "auto_complete_config function in model 'ac_no_return' must return a valid "
        "pb.ModelConfig object."
    ),
    "ac_policy_bad_key": (
        "model transaction property in auto-complete-config function for model "
        "'ac_policy_bad_key' contains property other than 'decoupled'"
    ),
    "ac_policy_mismatch": (
        "trying to change decoupled property in auto-complete-config for model "
        "'ac_policy_mismatch', which is already set to 'False'"
    ),
    "ac_dynamic_batching": {
        "max_batch_size": 4,
        "dynamic_batching": [4],
    },
    "ac_dynamic_batching_kept": {"max_batch_size": 4, "dynamic_batching": [4]},
    "ac_empty_config": {
        "inputs": ["INPUT0", "INPUT1"],
        "outputs": ["OUTPUT0", "OUTPUT1"],
    },
    "ac_incomplete_input": {
        "inputs": ["INPUT1", "INPUT0"],
        "outputs": ["OUTPUT0", "OUTPUT1"],
    },
    "ac_incomplete_output": {
        "inputs": ["INPUT0", "INPUT1"],
        "outputs": ["OUTPUT0", "OUTPUT1"],
    },
    "ac_policy_decoupled": {"max_batch_size": 4, "decoupled": True},
    "ac_policy_not_decoupled": {"max_batch_size": 4, "decoupled": False},
    "ac_policy_kept": {"max_batch_size": 4, "decoupled": True},
    "ac_optional_input": {"inputs": ["INPUT1", "INPUT0"], "optional": [False, True]},
    "ac_unknown_input": {"inputs": ["INPUT0", "INPUT_UNKNOWN", "INPUT1"]},
    "ac_unknown_output": {"outputs": ["OUTPUT_UNKNOWN", "OUTPUT1", "OUTPUT0"]},
}

assert EXPECTED.keys() == {case.name for case in CASES}


def _fields(config: dict[str, Any]) -> dict[str, Any]:
    """The served config's fields EXPECTED names."""
    inputs = config.get("input", [])
    return {
        "max_batch_size": config.get("max_batch_size", 0),
        "dynamic_batching": (config.get("dynamic_batching") or {}).get(
            "preferred_batch_size"
        ),
        "inputs": [t["name"] for t in inputs],
        "outputs": [t["name"] for t in config.get("output", [])],
        "optional": [bool(t.get("optional")) for t in inputs],
        "decoupled": bool(
            (config.get("model_transaction_policy") or {}).get("decoupled")
        ),
    }


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    repo = tmp_path_factory.mktemp("qa_autofill") / "repo"
    write_repository(repo, CASES)
    with server_pair(repo) as both:
        yield both


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_auto_complete_case(servers: Servers, name: str) -> None:
    ours, theirs = observe_pair(servers, name)
    expected = EXPECTED[name]
    if isinstance(expected, str):
        assert ours["load"] == 400, ours
        assert expected in ours["error"]
    else:
        assert ours["load"] == 200, ours
        status, config = ours["config"]
        assert status == 200
        seen = _fields(config)
        assert {k: seen[k] for k in expected} == expected
    if theirs is not None:
        assert ours == theirs
