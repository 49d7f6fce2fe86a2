"""Differential fuzzing of ensembles whose steps run response-flow programs: one-
and two-step ensembles of the decoupled and default-policy flow models
(tests/flowmodels.py ENSEMBLES), the same request to tritonx and to Triton 2.51
(the harness, its environment variables and the comparison rules are in
diffharness.py; the programs: ensemble_flow_strategies.py).

What the two servers must agree on: which responses of the steps become responses
of the ensemble, in what order and form, which errors end it (a step's error
response, a step that raises, a second step without its input or with a shape
its PROGRAM refuses, an ensemble that ends without its outputs), what each step
sees of the request (its id, parameters and the outputs asked of it, in a
report), and which requested outputs prune a step. Each request goes out once,
compared as flowcompare.py says; when the answers agree, so must what the request
added to the ensemble's statistics counters (requests, successes, failures,
executions, inferences, batches; not the durations). Not compared: the steps'
counters (after the ensemble failed, whether a step already launched still runs
is a race in both servers), and the counters of a request whose default-policy
step sent a response through its sender (tritonx delivers that response with the
step's FINAL, Triton 2.51 without, so Triton never sees that step end:
``stream-default-policy-final``; its count of the ensemble's failure differs).
A failure is compared as failed or not: Triton counts it twice when no step is in
flight as it fails, else once, and whether a first step's FINAL reaches its
ensemble before a second step's failure is a race in Triton 2.51
(tests/ensemble/test_ensemble_flow_differential.py has the orders that are not).

Which message of a stream is final is a race too where a decoupled first step
feeds a second one: the ensemble's last data response is final when the first
step's FINAL arrived before it, else an empty final response follows it. Those
streams are compared without the final flags and without the empty final
responses.
"""

# The harness's fixtures are imported by name for pytest to find; the tests' same-named
# parameters are those fixtures, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from decoupled_strategies import Call
from diffharness import (  # noqa: F401 (fixtures)
    Pair,
    _alive_and_live,
    pair,
    server,
)
from diffutil import Answer
from ensemble_flow_strategies import ensemble_calls
from flowcompare import compare_call
from flowmodels import ENSEMBLES, write_ensembles
from fuzzutil import TALLY, fuzz
from hypothesis import given
from serverutil import RunningServer, needs_reference

EXAMPLES = int(os.environ.get("TRITONX_ENSEMBLE_EXAMPLES", "100"))


@pytest.fixture(scope="module")
def fuzz_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("ensemble_flow_repo")
    write_ensembles(repo)
    return repo


_FINAL_FLAG = re.compile(
    r' ?parameters \{ key: "triton_final_response" value \{ bool_param: \w+ \} \}'
)
_NOTHING_MORE = re.compile(
    r'model_name: "[^"]*"( model_version: "[^"]*")?( id: "[^"]*")?'
)


def without_final_flags(answer: Answer) -> Answer:
    """A stream's messages without their final flags or an empty final one."""
    if answer.code != "OK":
        return answer
    lines = [_FINAL_FLAG.sub("", line) for line in answer.text.split("\n")]
    kept = [line for line in lines if not _NOTHING_MORE.fullmatch(line.strip())]
    return Answer(answer.code, "\n".join(kept))


def counters(server: RunningServer, model: str) -> dict[str, int]:
    """``model``'s statistics counters (no durations)."""
    url = f"http://127.0.0.1:{server.ports['http']}/v2/models/{model}/stats"
    with urllib.request.urlopen(url, timeout=30) as answer:
        (stats,) = json.loads(answer.read())["model_stats"]
    counts = {
        f"{kind} count": s["count"] for kind, s in stats["inference_stats"].items()
    }
    counts["inference_count"] = stats["inference_count"]
    counts["execution_count"] = stats["execution_count"]
    for batch in stats["batch_stats"]:
        counts[f"batch {batch['batch_size']}"] = batch["compute_infer"]["count"]
    return counts


def added(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What changed between two readings of ``counters`` (a failure count as 1:
    failed)."""
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    if "fail count" in delta:
        delta["fail count"] = 1
    return delta


def second_step_programs(program: dict[str, Any]) -> list[dict[str, Any]]:
    """The programs a two-step ensemble's first step hands the second: its
    responses' TEXT values that are JSON."""
    specs = [send["response"] for send in program["send"]]
    specs += program.get("returns", [])
    found = []
    for spec in specs:
        for text in (spec or {}).get("text", []):
            with contextlib.suppress(ValueError):  # text that is not JSON
                found.append(json.loads(text))
    return found


def sender_used_by_default_policy_step(call: Call) -> bool:
    """Whether a flow_plain step of ``call`` answers through its response sender."""
    steps = ENSEMBLES[call.model]
    if steps[0] == "flow_plain" and call.program["send"]:
        return True
    return (
        steps[-1] == "flow_plain"
        and len(steps) == 2
        and any(program.get("send") for program in second_step_programs(call.program))
    )


def compare_counters(
    pair: Pair, call: Call, ours: dict[str, int], theirs: dict[str, int]
) -> None:
    """The counters each server added to the ensemble for ``call`` (read again for a
    second while they differ: Triton counts a request when it releases it, which
    may follow the last response)."""
    deadline = time.monotonic() + 1.0
    while True:
        ours_added = added(ours, counters(pair.ours, call.model))
        theirs_added = added(theirs, counters(pair.reference.server, call.model))
        if ours_added == theirs_added or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    problem = None
    if ours_added != theirs_added:
        problem = (
            f"statistics: tritonx added {ours_added}\nTriton added  {theirs_added}\n"
            f"request: {call!r}"
        )
    TALLY.record(
        "diff-flow-stats", ["same" if problem is None else "mismatch"], problem
    )


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(call=ensemble_calls())
def test_ensemble_response_flow(pair: Pair, call: Call) -> None:
    restarts = pair.reference.restarts
    ours = counters(pair.ours, call.model)
    theirs = counters(pair.reference.server, call.model)
    steps = ENSEMBLES[call.model]
    racing = len(steps) == 2 and steps[0] == "flow_decoupled"
    verdict = compare_call(pair, call, without_final_flags if racing else None)
    if verdict != "same" or pair.reference.restarts != restarts:
        return
    if not sender_used_by_default_policy_step(call):
        compare_counters(pair, call, ours, theirs)
