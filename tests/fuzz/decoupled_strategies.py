"""Hypothesis strategies for the response-flow differential fuzz
(test_differential_decoupled.py): programs for the flow models of
tests/flowmodels.py (how a program is read: there), and the requests that carry
them over gRPC streams, unary gRPC, HTTP infer, generate and generate_stream.

Programs send responses with the config's outputs or others (names, types, two
dimensions), error responses with and without a code, empty responses and flags
only; flags FINAL, 0 and unsupported ones; sends after the sender closed; sends on
a thread after execute returned (decoupled); and end execute with None, a list of
responses (of any length) or an exception. What the two servers must agree on is
what Python backend authors rely on: which responses reach the client, in what
order and form, with which errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flowmodels import MODELS
from fuzzutil import request_bytes
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

# -- programs -------------------------------------------------------------------------

FINAL = 1
# One in twenty (Hypothesis draws an interval's ends far more often than the rest).
rarely = st.integers(0, 19).map(lambda n: n == 7)


@st.composite
def responses(
    draw: Any, sent: bool = True, empty_error: bool = True
) -> dict[str, Any] | None:
    """A response the model builds: outputs (the config's or not), an error (with
    an empty message unless ``empty_error`` is false), or (``sent``) nothing:
    ``None``, a send with flags only. (None returned by execute leaves the request
    to its sender: the servers would wait forever.)"""
    kinds = ["outputs", "outputs", "outputs", "error", "empty"]
    kind = draw(st.sampled_from([*kinds, "none"] if sent else kinds))
    if kind == "none":
        return None
    if kind == "error":
        messages = ["bad", "", "x é"] if empty_error else ["bad", "x é"]
        spec: dict[str, Any] = {"error": draw(st.sampled_from(messages))}
        code = draw(st.sampled_from([None, "INVALID_ARG", "UNAVAILABLE", "CANCELLED"]))
        if code is not None:
            spec["code"] = code
        return spec
    spec = {}
    if kind == "empty":
        return spec
    if draw(st.booleans()):
        spec["out"] = draw(st.lists(st.integers(-3, 3), max_size=3))
        if draw(rarely):
            spec["out"] = [spec["out"], spec["out"]]  # two dimensions
        if draw(rarely):
            spec["dtype"] = draw(st.sampled_from(["float32", "int64"]))
        if draw(rarely):
            spec["name"] = "EXTRA"  # not in the config
    if draw(st.booleans()):
        spec["text"] = draw(st.lists(st.sampled_from(["a", "", "ü"]), max_size=2))
    if draw(st.integers(0, 3)) == 0:
        spec["report"] = True
    return spec


@st.composite
def sends(draw: Any, empty_error: bool = True) -> dict[str, Any]:
    flags = draw(st.sampled_from([0, 0, FINAL, FINAL, 2, 3]))
    return {"response": draw(responses(empty_error=empty_error)), "flags": flags}


@st.composite
def programs(draw: Any, model: str, bls: bool = False) -> dict[str, Any]:
    """What the model does for one request. ``bls``: a program a BLS call runs,
    without three things Triton 2.51's BLS answers in its own way: an error
    response with an empty message (the caller never sees it), a decoupled model's
    error response that is not its last (lost) or follows other responses (the
    caller waits forever), and a default-policy response sent before FINAL (the
    caller gets one more, empty response; the same root as the
    stream-default-policy-final deviation)."""
    program: dict[str, Any] = {
        "send": draw(st.lists(sends(empty_error=not bls), max_size=4))
    }
    if bls and model == "flow_decoupled":
        # Triton 2.51's BLS loses a decoupled model's error response that is not
        # its last, and waits forever for one that follows other responses: an
        # error here goes with FINAL, and only before any other response.
        answered = False
        for send in program["send"]:
            response = send["response"]
            if response is not None and "error" in response:
                if answered:
                    send["response"] = {}
                else:
                    send["flags"] = FINAL
            answered = answered or (response is not None and send["flags"] in (0, 1))
    if model == "flow_decoupled":
        # A thread's sends race with what execute's end makes the server send.
        program["thread"] = draw(st.booleans())
        ends = ["none"] if program["thread"] else ["none", "none", "raise", "list"]
    elif draw(st.booleans()):
        # The default policy answered through the sender: sends (misused ones
        # raise), completed so the request ends. A response returned as well, or a
        # sender used after execute raised, is left out: Triton 2.51 then sends the
        # request a second response or crashes.
        if bls:  # the one response goes with FINAL; later sends raise
            first = {"response": draw(responses(False, False)), "flags": FINAL}
            program["send"].insert(0, first)
        program["send"].extend(_completion(program["send"]))
        return {**program, "end": "none"}
    else:
        program["send"] = []  # the default policy answered by execute's return
        ends = ["list", "list", "raise"]
    end = draw(st.sampled_from(ends))
    program["end"] = end
    if end == "raise":
        program["message"] = draw(st.sampled_from(["boom", ""]))
    elif end == "list":
        count = draw(st.sampled_from([1, 1, 1, 0, 2]))
        program["returns"] = [
            draw(responses(sent=False, empty_error=not bls)) for _ in range(count)
        ]
    return program


def _completion(sends: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sends that complete a default-policy request after ``sends`` (Triton's
    sender rules: flags 0 or FINAL, a response unless FINAL, one response, FINAL
    only after it, nothing after FINAL; a send breaking one raises and changes
    nothing)."""
    sent = 0
    closed = False
    for send in sends:
        response, flags = send["response"], send["flags"]
        if flags not in (0, FINAL) or (flags == 0 and response is None):
            continue
        if (response is not None and sent) or (response is None and not sent):
            continue
        if closed:
            continue
        sent += 1
        closed = flags == FINAL
    if not sent:
        return [{"response": {"out": [1]}, "flags": FINAL}]
    return [] if closed else [{"response": None, "flags": FINAL}]


# -- requests -------------------------------------------------------------------------

PROTOCOLS = (
    "grpc-stream",
    "grpc-stream",
    "grpc",
    "http",
    "generate",
    "generate-stream",
)


@dataclass
class Call:
    """One request carrying a program; ``outputs`` the names asked for (None: the
    member left out), ``parameters`` custom request parameters."""

    model: str
    protocol: str
    program: dict[str, Any]
    request_id: str | None = None
    outputs: list[str] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    binary_output: bool = False

    @property
    def program_text(self) -> str:
        return json.dumps(self.program, sort_keys=True)

    def http_wire(self) -> tuple[bytes, bytes]:
        """The whole request and its JSON body (infer, generate, generate_stream)."""
        body: dict[str, Any]
        if self.protocol == "http":
            tensor = {"name": "PROGRAM", "shape": [1], "datatype": "BYTES"}
            body = {"inputs": [{**tensor, "data": [self.program_text]}]}
            if self.request_id is not None:
                body["id"] = self.request_id
            if self.outputs is not None:
                extra = (
                    {"parameters": {"binary_data": True}} if self.binary_output else {}
                )
                body["outputs"] = [{"name": name, **extra} for name in self.outputs]
            if self.parameters:
                body["parameters"] = self.parameters
            path = f"/v2/models/{self.model}/infer"
        else:
            body = {"PROGRAM": self.program_text, **self.parameters}
            if self.request_id is not None:
                body["id"] = self.request_id
            suffix = "_stream" if self.protocol == "generate-stream" else ""
            path = f"/v2/models/{self.model}/generate{suffix}"
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        return request_bytes("POST", path, payload, headers), payload

    def grpc_request(self) -> Any:
        request = service_pb2.ModelInferRequest(model_name=self.model)
        if self.request_id is not None:
            request.id = self.request_id
        tensor = request.inputs.add(name="PROGRAM", datatype="BYTES")
        tensor.shape.append(1)
        tensor.contents.bytes_contents.append(self.program_text.encode())
        for name in self.outputs or []:
            request.outputs.add(name=name)
        for key, value in self.parameters.items():
            parameter = request.parameters[key]
            if isinstance(value, bool):
                parameter.bool_param = value
            elif isinstance(value, int):
                parameter.int64_param = value
            else:
                parameter.string_param = value
        return request


def with_options(draw: Any, call: Call, outputs: list[str]) -> Call:
    """``call`` given (or not) an id, requested outputs (from ``outputs`` and a
    name no model has), a custom parameter and the empty-final setting."""
    if draw(st.booleans()):
        call.request_id = draw(st.sampled_from(["r1", "", "ü"]))
    if (
        call.protocol in ("grpc", "grpc-stream", "http")
        and draw(st.integers(0, 2)) == 0
    ):
        names = [*outputs, "NOPE"]
        call.outputs = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
        call.binary_output = call.protocol == "http" and draw(st.booleans())
    if draw(st.booleans()):
        call.parameters["p"] = draw(st.sampled_from([1, "s", True]))
    if call.protocol == "grpc-stream" and draw(st.booleans()):
        call.parameters["triton_enable_empty_final_response"] = draw(st.booleans())
    return call


@st.composite
def calls(draw: Any) -> Call:
    model = draw(st.sampled_from(sorted(MODELS)))
    protocol = draw(st.sampled_from(PROTOCOLS))
    return with_options(
        draw, Call(model, protocol, draw(programs(model))), ["OUT", "TEXT"]
    )
