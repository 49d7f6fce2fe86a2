"""L0_model_config's noautofill_platform cases that test_config_differential.py
does not have, on Python models, tritonx against Triton 2.51.

Batch inputs and outputs with too few or too many source inputs, a repeated
target, an unknown source; two CONTROL_SEQUENCE_END or CONTROL_SEQUENCE_READY
controls; an output's reshape with a zero, a different element count, or chunks
between its variable-size dimensions that differ. Both servers (EXPLICIT mode,
one repository) load every case and must give the same observation
(config_diff.observe); each server's error (in its answer, or in its log for a
config refused while polling) must give the reason Triton's QA expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from config_diff import Case, write_repository
from serverutil import RunningServer
from test_config_differential import Servers, observe_pair, server_pair

IO = (
    'backend: "python"\n'
    'input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] } ]\n'
    'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] } ]\n'
)


def batch_input(kind: str, sources: list[str]) -> str:
    listed = ", ".join(f'"{s}"' for s in sources)
    return (
        IO + "max_batch_size: 4\n"
        f'batch_input [ {{ kind: {kind} target_name: "B" data_type: TYPE_FP32 '
        f"source_input: [ {listed} ] }} ]\n"
    )


def batch_output(targets: list[str], sources: list[str]) -> str:
    return (
        IO + "max_batch_size: 4\n"
        "batch_output [ { kind: BATCH_SCATTER_WITH_INPUT_SHAPE "
        f"target_name: [ {', '.join(f'{t!r}' for t in targets)} ] "
        f"source_input: [ {', '.join(f'{s!r}' for s in sources)} ] }} ]\n"
    ).replace("'", '"')


def controls(*pairs: tuple[str, str]) -> str:
    listed = ", ".join(
        f'{{ name: "{name}" control [ {{ kind: CONTROL_SEQUENCE_{kind} '
        "int32_false_true: [ 0, 1 ] } ] }"
        for name, kind in pairs
    )
    return (
        'backend: "python"\nmax_batch_size: 8\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        f"sequence_batching {{ control_input [ {listed} ] }}\n"
    )


def reshaped_output(mbs: int, dims: str, shape: str) -> str:
    return (
        f'backend: "python"\nmax_batch_size: {mbs}\n'
        'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        f'output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ {dims} ] '
        f"reshape {{ shape: [ {shape} ] }} }} ]\n"
    )


KINDS = {
    "count": "BATCH_ELEMENT_COUNT",
    "accumulated": "BATCH_ACCUMULATED_ELEMENT_COUNT",
    "accumulated_zero": "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO",
    "max_shape": "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE",
}

# name -> (config, the reason Triton's QA expects in the error)
TABLE: dict[str, tuple[str, str]] = {
    **{
        f"bi_none_{short}": (
            batch_input(kind, []),
            f"batch input kind '{kind}' expects 1 source input, got 0",
        )
        for short, kind in KINDS.items()
    },
    **{
        f"bi_two_{short}": (
            batch_input(kind, ["IN", "IN"]),
            f"batch input kind '{kind}' expects 1 source input, got 2",
        )
        for short, kind in KINDS.items()
    },
    "bo_target_twice": (
        batch_output(["OUT", "OUT"], ["IN"]),
        "target output name 'OUT' can only be specified once",
    ),
    "bo_no_source": (
        batch_output(["OUT"], []),
        "batch output kind 'BATCH_SCATTER_WITH_INPUT_SHAPE' expects 1 source input, "
        "got 0",
    ),
    "bo_two_sources": (
        batch_output(["OUT"], ["IN", "IN"]),
        "batch output kind 'BATCH_SCATTER_WITH_INPUT_SHAPE' expects 1 source input, "
        "got 2",
    ),
    "bo_unknown_source": (
        batch_output(["OUT"], ["NOPE"]),
        "unknown source input name 'NOPE'",
    ),
    "sb_two_ends": (
        controls(("START", "START"), ("READY", "READY"), ("E0", "END"), ("E1", "END")),
        "sequence batching specifies multiple CONTROL_SEQUENCE_END tensors for "
        "sb_two_ends",
    ),
    "sb_two_readies": (
        controls(("START", "START"), ("R0", "READY"), ("R1", "READY")),
        "sequence batching specifies multiple CONTROL_SEQUENCE_READY tensors for "
        "sb_two_readies",
    ),
    "out_reshape_zero": (
        reshaped_output(0, "2, 2", "0"),
        "model output 'OUT' reshape dimensions must be integer >= 1, or -1 to "
        "indicate a variable-size dimension for out_reshape_zero",
    ),
    "out_reshape_count": (
        reshaped_output(4, "1, 3, 2", "3"),
        "model output 'OUT' has different size for dims and reshape for "
        "out_reshape_count",
    ),
    "out_reshape_chunks": (
        reshaped_output(4, "2, -1", "1, -1, 2"),
        "model output 'OUT' has different size for dims and reshape for "
        "out_reshape_chunks",
    ),
    "out_reshape_variables": (
        reshaped_output(0, "2, -1", "2, -1, -1"),
        "model output 'OUT' has different number of variable-size dimensions for "
        "dims and reshape for out_reshape_variables",
    ),
}

CASES = [Case(name, config) for name, (config, _) in TABLE.items()]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    repo = tmp_path_factory.mktemp("qa_platform") / "repo"
    write_repository(repo, CASES)
    with server_pair(repo) as both:
        yield both


@pytest.mark.parametrize("name", list(TABLE))
def test_platform_case(servers: Servers, name: str) -> None:
    ours, theirs = observe_pair(servers, name)
    reason = TABLE[name][1]
    assert ours["load"] != 200, ours
    assert _reason_given(servers.ours, ours, reason), ours
    if theirs is not None:
        assert servers.reference is not None
        assert _reason_given(servers.reference.server, theirs, reason), theirs
        assert ours == theirs


def _reason_given(server: RunningServer, seen: dict[str, Any], reason: str) -> bool:
    """In the load's answer, or (a config refused while polling) in the log."""
    return reason in (seen.get("error") or "") or server.wait_for_log(reason, 15)
