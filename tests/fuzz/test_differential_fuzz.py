"""Differential fuzzing of inference: the same mutated requests to tritonx and to
Triton 2.51 (the harness, its environment variables and the comparison rules are
in diffharness.py; the control plane is test_differential_control.py's).

* HTTP infer (JSON and binary-extension bodies): the status and the error message;
  for a success, the response's JSON header and binary tail;
* gRPC ``ModelInfer``: the status code and its details; for OK, the response;
  the same mutations on a ``ModelStreamInfer`` stream (an in-band error is taken
  in unary terms when it is the server's unary answer);
* HTTP ``generate`` / ``generate_stream``: inputs as members of the model's type,
  mutated; a success compared whole (a stream: its events).
"""

# The harness's fixtures are imported by name for pytest to find; the tests' same-named
# parameters are those fixtures, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

from diffharness import (  # noqa: F401 (fixtures)
    EXAMPLES,
    MODELS,
    Pair,
    _alive_and_live,
    compare_grpc,
    compare_grpc_stream,
    compare_http,
    fuzz_models,
    pair,
    server,
)
from fuzzutil import fuzz, request_bytes
from grpc_strategies import infer_requests, mutate_request
from http_strategies import (
    dumps,
    generate_requests,
    infer_cases,
    mutate_binary_case,
    mutate_doc,
)
from hypothesis import given
from hypothesis import strategies as st
from serverutil import needs_reference


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_grpc_stream_mutations(pair: Pair, data: st.DataObject) -> None:
    """ModelInfer's mutations sent on a ModelStreamInfer stream: each server's
    in-band answer must be its unary answer (code aside), and the two servers'
    must be equal as in test_grpc_field_mutations."""
    request = data.draw(infer_requests(models=MODELS), label="valid request")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate_request(request, data)
    compare_grpc_stream(pair, request)


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_http_json_mutations(pair: Pair, data: st.DataObject) -> None:
    case = data.draw(infer_cases(binary=False, models=MODELS), label="valid request")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate_doc(case.doc, data)
    body, headers = case.body_and_headers()
    compare_http(pair, request_bytes("POST", case.path, body, headers), dumps(case.doc))


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_http_binary_mutations(pair: Pair, data: st.DataObject) -> None:
    case = data.draw(infer_cases(binary=True, models=MODELS), label="valid request")
    body, headers = mutate_binary_case(case, data)
    json_text = case.header_as_read() if case.doc else body
    compare_http(pair, request_bytes("POST", case.path, body, headers), json_text)


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_grpc_field_mutations(pair: Pair, data: st.DataObject) -> None:
    request = data.draw(infer_requests(models=MODELS), label="valid request")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate_request(request, data)
    compare_grpc(pair, request)


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(request=generate_requests(MODELS))
def test_http_generate(pair: Pair, request: tuple[str, Any]) -> None:
    """The generate extension: inputs as JSON members of the model's type and
    shape, then mutated; a success compared whole (generate_stream: its events)."""
    path, body = request
    payload = dumps(body)
    wire = request_bytes("POST", path, payload, {"Content-Type": "application/json"})
    compare_http(pair, wire, payload, "diff-http-generate")
