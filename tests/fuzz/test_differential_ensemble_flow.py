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
compared as flowcompare.py says.
"""

# The harness's fixtures are imported by name for pytest to find; the tests' same-named
# parameters are those fixtures, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import os
from pathlib import Path

import pytest
from decoupled_strategies import Call
from diffharness import (  # noqa: F401 (fixtures)
    Pair,
    _alive_and_live,
    pair,
    server,
)
from ensemble_flow_strategies import ensemble_calls
from flowcompare import compare_call
from flowmodels import write_ensembles
from fuzzutil import fuzz
from hypothesis import given
from serverutil import needs_reference

EXAMPLES = int(os.environ.get("TRITONX_ENSEMBLE_EXAMPLES", "100"))


@pytest.fixture(scope="module")
def fuzz_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("ensemble_flow_repo")
    write_ensembles(repo)
    return repo


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(call=ensemble_calls())
def test_ensemble_response_flow(pair: Pair, call: Call) -> None:
    compare_call(pair, call)
