"""Differential fuzzing of BLS: the same programs of BLS calls made by a Python
model on tritonx and on Triton 2.51 (the harness, its environment variables and
the comparison rules are in diffharness.py; the programs and the calling model:
bls_strategies.py; the target models and ensembles: tests/flowmodels.py).

Each program goes to ``bls_prog`` over HTTP; its answer reports, per call, every
response the call gave (error message and code, or each output's name, type,
shape and values) or the exception it raised, and is compared whole.
"""

# The harness's fixtures are imported by name for pytest to find; the tests' same-named
# parameters are those fixtures, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bls_strategies import bls_programs, http_body, write_model
from diffharness import (  # noqa: F401 (fixtures)
    EXAMPLES,
    Pair,
    _alive_and_live,
    compare_http,
    pair,
    server,
)
from flowmodels import write_ensembles
from fuzzutil import fuzz, request_bytes
from hypothesis import given
from serverutil import needs_reference


@pytest.fixture(scope="module")
def fuzz_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("bls_repo")
    write_ensembles(repo)
    write_model(repo)
    return repo


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(program=bls_programs())
def test_bls_programs(pair: Pair, program: list[dict[str, Any]]) -> None:
    body = http_body(program)
    headers = {"Content-Type": "application/json"}
    wire = request_bytes("POST", "/v2/models/bls_prog/infer", body, headers)
    compare_http(pair, wire, body, "diff-bls")
