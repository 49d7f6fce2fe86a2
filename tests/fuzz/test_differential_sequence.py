"""Differential fuzzing of stateful inference: the same programs of requests to
sequence-batched Python models on tritonx and on Triton 2.51 (the harness, its
environment variables and the comparison rules are in diffharness.py).

A program is 1-8 requests over HTTP, gRPC and gRPC streams with correlation ids and START/END
flags, well-formed and odd (strategies: sequence_strategies.py). Each answer is
compared as an inference answer is: an error's code and message, or the whole
response, which here reports what the model was handed (the request's place in
its execution, the batch, every control input of every request in it, null
requests included) and the model's running total for the sequence. After a
program, every id it sent is ended on both servers, so programs do not leak
into each other.
"""

# The harness's fixtures are imported by name for pytest to find; the tests' same-named
# parameters are those fixtures, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest
from diffharness import (  # noqa: F401 (fixtures)
    EXAMPLES,
    Pair,
    _alive_and_live,
    compare_grpc,
    compare_grpc_stream,
    compare_http,
    grpc_answer,
    http_answer,
    pair,
    server,
)
from fuzzutil import fuzz
from hypothesis import given
from sequence_strategies import Step, closing_steps, programs, write_models
from serverutil import needs_reference


@pytest.fixture(scope="module")
def fuzz_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("sequence_repo")
    write_models(repo)
    return repo


def _close(pair: Pair, step: Step) -> None:
    """Ends a sequence on both servers; the answers are not compared (an END for a
    sequence a server already ended is refused)."""
    if step.protocol == "http":
        wire, _ = step.http_wire()
        http_answer(pair.ours.ports["http"], wire)
        http_answer(pair.reference.server.ports["http"], wire)
    else:
        wire = step.grpc_request().SerializeToString()
        grpc_answer(pair.ours_channel, wire)
        grpc_answer(pair.reference.channel, wire)


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(program=programs())
def test_sequence_programs(pair: Pair, program: list[Step]) -> None:
    try:
        for step in program:
            if step.protocol == "http":
                wire, payload = step.http_wire()
                compare_http(pair, wire, payload, "diff-sequence-http")
            elif step.protocol == "grpc":
                compare_grpc(pair, step.grpc_request(), "diff-sequence-grpc")
            else:
                compare_grpc_stream(pair, step.grpc_request(), "diff-sequence-stream")
    finally:
        for step in closing_steps(program):
            _close(pair, step)
