"""Differential fuzzing of response flow: the same programs run by a decoupled and
a default-policy Python model on tritonx and on Triton 2.51 (the harness, its
environment variables and the comparison rules are in diffharness.py; the
programs: decoupled_strategies.py; the models: tests/flowmodels.py).

Each program goes out once, over one of gRPC ModelStreamInfer, unary ModelInfer,
HTTP infer, generate and generate_stream, compared as flowcompare.py says.
"""

# The harness's fixtures are imported by name for pytest to find; the tests' same-named
# parameters are those fixtures, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest
from decoupled_strategies import Call, calls
from diffharness import (  # noqa: F401 (fixtures)
    EXAMPLES,
    Pair,
    _alive_and_live,
    pair,
    server,
)
from flowcompare import compare_call
from flowmodels import write_models
from fuzzutil import fuzz
from hypothesis import given
from serverutil import needs_reference


@pytest.fixture(scope="module")
def fuzz_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("flow_repo")
    write_models(repo)
    return repo


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(call=calls())
def test_response_flow(pair: Pair, call: Call) -> None:
    compare_call(pair, call)
