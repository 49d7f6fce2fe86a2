"""Hypothesis strategies for the stateful differential fuzz
(test_differential_sequence.py): short programs of requests to sequence-batched
Python models, with well-formed and odd correlation ids and flags.

The models report what the sequence batcher handed them: each response names the
request's place in its execution, the batch size, every control input of every
request in that execution (a direct batcher's null requests included) and the
model's own running total for the correlation id. Two servers whose batchers
assign slots, order sequences and fill controls alike answer alike.

A program mostly uses a small pool of ids per model and never more distinct ids
than the model has sequence slots (SLOTS), so no request waits in a backlog for a
slot: a program is sent one request at a time and would wait for the idle
timeout. Requests are sent one at a time, so every execution holds one ready
request and both servers' answers are deterministic.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzzutil import request_bytes
from grpc_strategies import param_field
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

# A control's value as the model reports it: None when the config has no such
# control, else the tensor's values.
MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils

CONTROLS = ("START", "END", "READY", "CORRID")


def values(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    array = tensor.as_numpy().ravel()
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v.item()
            for v in array]


class TritonPythonModel:
    def initialize(self, args):
        self.totals = {}

    def execute(self, requests):
        seen = []
        for request in requests:
            controls = {name: values(request, name) for name in CONTROLS}
            # A null request's input holds whatever Triton's buffer held.
            if controls["READY"] is None or controls["READY"][0]:
                controls["INPUT0"] = values(request, "INPUT0")
            seen.append(controls)
        responses = []
        for position, (request, controls) in enumerate(zip(requests, seen)):
            key = repr(controls["CORRID"])
            x = sum(controls.get("INPUT0", []))
            if controls["START"] and controls["START"][0]:
                self.totals[key] = 0
            if controls["READY"] is None or controls["READY"][0]:
                self.totals[key] = self.totals.get(key, 0) + x
            total = self.totals.get(key)
            if controls["END"] and controls["END"][0]:
                self.totals.pop(key, None)
            text = repr((position, len(requests), total, seen))
            batched = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            shape = [1] * batched.ndim
            out = np.array([text.encode()], dtype=np.object_).reshape(shape)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SEEN", out)]))
        return responses
"""

_IO = """
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "SEEN" data_type: TYPE_STRING dims: [ 1 ] } ]
"""


def _control(name: str, kind: str, datatype: str = "") -> str:
    if kind == "CONTROL_SEQUENCE_CORRID":
        value = f"data_type: {datatype}"
    else:
        value = {
            "int32": "int32_false_true: [ 0, 1 ]",
            "fp32": "fp32_false_true: [ 0, 1 ]",
            "bool": "bool_false_true: [ false, true ]",
        }[datatype]
    return f'{{ name: "{name}" control [ {{ kind: {kind} {value} }} ] }}'


# name -> (config, the correlation ids its programs mostly use). No string id meets
# a CORRID control: Triton 2.51 pads a string id to 128 bytes in a TYPE_STRING
# CORRID and then refuses every request ("unexpected number of string elements 2
# for inference input 'CORRID', expecting 1"; tritonx hands the id itself, see
# tests/sequence/test_qa_corrid_types.py), and puts the bytes of its own string
# object (a pointer) in a numeric one.
MODELS: dict[str, tuple[str, tuple[int | str, ...]]] = {
    # Direct, 6 slots on one instance: null requests fill the empty lower slots.
    "seq_direct": (
        f"""
max_batch_size: 6
{_IO}
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
sequence_batching {{
  max_sequence_idle_microseconds: 600000000
  direct {{ }}
  control_input [
    {_control("START", "CONTROL_SEQUENCE_START", "int32")},
    {_control("END", "CONTROL_SEQUENCE_END", "int32")},
    {_control("READY", "CONTROL_SEQUENCE_READY", "int32")},
    {_control("CORRID", "CONTROL_SEQUENCE_CORRID", "TYPE_UINT64")}
  ]
}}
""",
        (1, 12345678901, 2**64 - 1),
    ),
    # Oldest, 6 candidate sequences.
    "seq_oldest": (
        f"""
max_batch_size: 4
{_IO}
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
sequence_batching {{
  max_sequence_idle_microseconds: 600000000
  oldest {{ max_candidate_sequences: 6 }}
  control_input [
    {_control("START", "CONTROL_SEQUENCE_START", "bool")},
    {_control("END", "CONTROL_SEQUENCE_END", "bool")},
    {_control("CORRID", "CONTROL_SEQUENCE_CORRID", "TYPE_INT64")}
  ]
}}
""",
        (3, 2**40, 9),
    ),
    # No batching: one slot per instance, so three instances (and the model's total
    # per instance is its sequence's); string ids, there being no CORRID to hold one.
    "seq_single": (
        f"""
max_batch_size: 0
{_IO}
instance_group [ {{ kind: KIND_CPU count: 3 }} ]
sequence_batching {{
  max_sequence_idle_microseconds: 600000000
  control_input [
    {_control("START", "CONTROL_SEQUENCE_START", "fp32")},
    {_control("READY", "CONTROL_SEQUENCE_READY", "fp32")}
  ]
}}
""",
        ("x", "a longer correlation id", 7),
    ),
}


# The sequences each model serves at once (more would wait in its backlog).
SLOTS = {"seq_direct": 6, "seq_oldest": 6, "seq_single": 3}


def write_models(repo: Path) -> None:
    for name, (config, _) in MODELS.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(
            f'name: "{name}"\nbackend: "python"\n' + textwrap.dedent(config)
        )
        (repo / name / "1" / "model.py").write_text(MODEL)


# -- programs -------------------------------------------------------------------------

ABSENT = object()  # a parameter not sent
KEYS = ("sequence_id", "sequence_start", "sequence_end")


@dataclass
class Step:
    """One request of a program: ``parameters`` the sequence parameters it sends
    (of KEYS); for gRPC, ``kinds`` names each one's InferParameter field."""

    model: str
    protocol: str  # "http", "grpc" or "grpc-stream" (ModelStreamInfer)
    parameters: dict[str, Any]
    value: int
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> list[int]:
        return [1] if self.model == "seq_single" else [1, 1]

    def http_wire(self) -> tuple[bytes, bytes]:
        """The whole request, and its JSON body."""
        tensor = {"name": "INPUT0", "shape": self.shape, "datatype": "INT32"}
        body: dict[str, Any] = {"inputs": [{**tensor, "data": [self.value]}]}
        if self.parameters:
            body["parameters"] = self.parameters
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        path = f"/v2/models/{self.model}/infer"
        return request_bytes("POST", path, payload, headers), payload

    def grpc_request(self) -> Any:
        request = service_pb2.ModelInferRequest(model_name=self.model)
        tensor = request.inputs.add(name="INPUT0", datatype="INT32")
        tensor.shape.extend(self.shape)
        tensor.contents.int_contents.append(self.value)
        for key, value in self.parameters.items():
            setattr(request.parameters[key], self.kinds[key], value)
        return request


# Odd values, each refused (or, for a flag, read) the same way by a Triton-like
# server; those gRPC cannot carry are not sent there.
ODD_IDS: list[Any] = [0, "", -1, 2**64 - 1, 2**64, 1.5, True, None, [1]]
ODD_FLAGS: list[Any] = [1, 0, "true", None, 1.0]


# One in twenty (Hypothesis draws an interval's ends far more often than the rest).
rarely = st.integers(0, 19).map(lambda n: n == 7)


@st.composite
def steps(draw: Any, model: str, current: Any, started: frozenset[str]) -> Step:
    """One request of ``model``'s program; ``current`` is the id its last step used
    (reused more often than not, so sequences get a body); an id not in
    ``started`` mostly gets a START."""
    protocol = draw(st.sampled_from(["http", "grpc", "grpc-stream"]))
    choice = draw(st.integers(0, 9))
    if choice < 4 and current is not None:
        sequence_id = current
    elif choice < 9:
        sequence_id = draw(st.sampled_from(MODELS[model][1]))
    else:
        sequence_id = draw(st.sampled_from([ABSENT, *ODD_IDS]))
    flags = draw(st.sampled_from(["start", "", "", "end", "start,end"]))
    if _value_key(sequence_id) not in started and not draw(rarely):
        flags += ",start"
    start: Any = True if "start" in flags else draw(st.sampled_from([ABSENT, False]))
    end: Any = True if "end" in flags else draw(st.sampled_from([ABSENT, False]))
    if draw(rarely):
        start = draw(st.sampled_from(ODD_FLAGS))
    if draw(rarely):
        end = draw(st.sampled_from(ODD_FLAGS))
    sent = dict(zip(KEYS, (sequence_id, start, end), strict=True))
    parameters = {key: value for key, value in sent.items() if value is not ABSENT}
    step = Step(model, protocol, parameters, draw(st.integers(-3, 9)))
    if protocol != "http":
        for key, value in list(parameters.items()):
            kind = param_field(value)
            if kind == "uint64_param" and not draw(rarely):
                # tritonclient's spelling of an id past int64: its two's complement
                kind, parameters[key] = "int64_param", value - 2**64
            if kind is None:
                del parameters[key]
            else:
                step.kinds[key] = kind
    return step


def _value_key(value: Any) -> str:
    """Which sequence an id names, as far as a program's bookkeeping goes (its
    type and repr; -1 over gRPC and 2^64-1 over HTTP count twice)."""
    return "" if value is ABSENT else f"{type(value).__name__}:{value!r}"


def _id_key(step: Step) -> str:
    return _value_key(step.parameters.get("sequence_id", ABSENT))


@st.composite
def programs(draw: Any) -> list[Step]:
    """1-8 requests, to one model or, now and then, to all of them interleaved; no
    model sees more distinct ids than it has slots."""
    models = sorted(MODELS) if draw(rarely) else [draw(st.sampled_from(sorted(MODELS)))]
    program: list[Step] = []
    current: dict[str, Any] = {}
    started: set[tuple[str, str]] = set()
    ids: dict[str, set[str]] = {model: set() for model in models}
    for _ in range(draw(st.integers(1, 8))):
        model = draw(st.sampled_from(models))
        mine = frozenset(value for name, value in started if name == model)
        step = draw(steps(model, current.get(model), mine))
        key = _id_key(step)
        if key and key not in ids[model] and len(ids[model]) == SLOTS[model]:
            continue  # it could wait in the backlog for a slot
        if key:
            ids[model].add(key)
            current[model] = step.parameters["sequence_id"]
            if step.parameters.get("sequence_start") is True:
                started.add((model, key))
        program.append(step)
    return program


def closing_steps(program: list[Step]) -> list[Step]:
    """An END for every id a program sent, sent as it was, so the next program
    finds every slot free (an END for a sequence not open is refused, harmlessly)."""
    closing: dict[tuple[str, str, str], Step] = {}
    for step in program:
        key = _id_key(step)
        if key:
            parameters = {
                "sequence_id": step.parameters["sequence_id"],
                "sequence_end": True,
            }
            kinds = {"sequence_id": step.kinds.get("sequence_id", ""),
                     "sequence_end": "bool_param"}  # fmt: skip
            closing[step.model, step.protocol, key] = Step(
                step.model, step.protocol, parameters, 0, kinds
            )
    return list(closing.values())
