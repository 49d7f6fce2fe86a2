"""Hypothesis strategies for the differential fuzz of inference through system
shared memory (test_differential_shm.py): valid requests whose inputs come from,
and outputs go to, registered regions, then odd offsets, sizes, region names,
parameter types and conflicts.

Two regions are registered on each server under the same names, each server's
own objects: ``in`` (128 bytes: 16 FP32 values, then BYTES elements serialized as
Triton reads them) and ``out`` (64 bytes), both reset before each request and
compared after it (an output may go to either).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fuzzutil import request_bytes
from grpc_strategies import param_field
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

OUT_BYTES = 64
FLOATS = np.arange(1, 17, dtype=np.float32)  # bytes 0-63 of ``in``
STRINGS = [b"abc", b"", b"hello", b"xy"]
STRINGS_AT = 64
IN_CONTENT = FLOATS.tobytes() + b"".join(struct.pack("<I", len(s)) + s for s in STRINGS)
IN_BYTES = 128


def serialized_size(count: int) -> int:
    return sum(4 + len(s) for s in STRINGS[:count])


@dataclass
class Tensor:
    """An input (``data``: inline values, or None) or a requested output, with
    the parameters it sends."""

    name: str
    datatype: str = ""
    shape: list[Any] = field(default_factory=list)
    data: list[Any] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class ShmRequest:
    model: str
    inputs: list[Tensor]
    outputs: list[Tensor]

    def http_wire(self) -> tuple[bytes, bytes]:
        def member(tensor: Tensor, is_input: bool) -> dict[str, Any]:
            doc: dict[str, Any] = {"name": tensor.name}
            if is_input:
                doc.update(datatype=tensor.datatype, shape=tensor.shape)
                if tensor.data is not None:
                    doc["data"] = [
                        v.decode("latin-1") if isinstance(v, bytes) else v
                        for v in tensor.data
                    ]
            if tensor.parameters:
                doc["parameters"] = tensor.parameters
            return doc

        body: dict[str, Any] = {"inputs": [member(t, True) for t in self.inputs]}
        if self.outputs:
            body["outputs"] = [member(t, False) for t in self.outputs]
        payload = json.dumps(body).encode()
        path = f"/v2/models/{self.model}/infer"
        headers = {"Content-Type": "application/json"}
        return request_bytes("POST", path, payload, headers), payload

    def grpc_request(self) -> Any:
        request = service_pb2.ModelInferRequest(model_name=self.model)
        for tensor in self.inputs:
            message = request.inputs.add(name=tensor.name, datatype=tensor.datatype)
            message.shape.extend(d for d in tensor.shape if _fits_int64(d))
            if tensor.data is not None:
                contents = message.contents
                if any(isinstance(v, bytes) for v in tensor.data):
                    contents.bytes_contents.extend(tensor.data)
                else:
                    contents.fp32_contents.extend(tensor.data)
            _set_parameters(message.parameters, tensor.parameters)
        for tensor in self.outputs:
            message = request.outputs.add(name=tensor.name)
            _set_parameters(message.parameters, tensor.parameters)
        return request


def _fits_int64(value: Any) -> bool:
    return isinstance(value, int) and -(2**63) <= value < 2**63


def _set_parameters(parameters: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        kind = param_field(value)
        if kind is not None:
            setattr(parameters[key], kind, value)


def _shm(region: str, byte_size: int, offset: int) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "shared_memory_region": region,
        "shared_memory_byte_size": byte_size,
    }
    if offset:
        parameters["shared_memory_offset"] = offset
    return parameters


@st.composite
def valid_requests(draw: Any) -> ShmRequest:
    """add_sub, identity or fuzz_bytes, each input inline or from ``in`` (at least
    one from ``in`` or one output to ``out``)."""
    model = draw(st.sampled_from(["add_sub", "identity", "fuzz_bytes"]))
    inputs: list[Tensor] = []
    outputs: list[Tensor] = []
    if model == "add_sub":
        for name in ("INPUT0", "INPUT1"):
            start = draw(st.integers(0, 3)) * 4
            tensor = Tensor(name, "FP32", [4])
            if draw(st.booleans()):
                tensor.parameters = _shm("in", 16, start * 4)
            else:
                tensor.data = FLOATS[start : start + 4].tolist()
            inputs.append(tensor)
        names = ["OUTPUT0", "OUTPUT1"]
        element_bytes = [16, 16]
    else:
        count = draw(st.integers(1, 4))
        batch = draw(
            st.sampled_from([[1, count], [count, 1]] if count > 1 else [[1, 1]])
        )
        if model == "identity":
            start = draw(st.integers(0, 16 - count))
            tensor = Tensor("INPUT0", "FP32", batch)
            size = 4 * count
            if draw(st.booleans()):
                tensor.parameters = _shm("in", size, start * 4)
            else:
                tensor.data = FLOATS[start : start + count].tolist()
        else:
            tensor = Tensor("INPUT0", "BYTES", batch)
            size = serialized_size(count)
            if draw(st.booleans()):
                tensor.parameters = _shm("in", size, STRINGS_AT)
            else:
                tensor.data = STRINGS[:count]
        inputs.append(tensor)
        names = ["OUTPUT0"]
        element_bytes = [size]
    at = 0
    for name, size in zip(names, element_bytes, strict=True):
        where = draw(st.sampled_from(["shm", "shm", "inline", "absent"]))
        if where == "shm" and at + size <= OUT_BYTES:
            outputs.append(Tensor(name, parameters=_shm("out", size, at)))
            at += size
        elif where == "inline":
            outputs.append(Tensor(name))
    if not any(t.parameters for t in inputs + outputs):  # nothing through shm
        outputs = [Tensor(names[0], parameters=_shm("out", element_bytes[0], 0))]
    return ShmRequest(model, inputs, outputs)


OFFSETS = [0, 1, 2, 4, 15, 16, 48, 60, 63, 64, 65, 124, 128, -1, 2**63, 2**64 - 1]
SIZES = [0, 1, 4, 12, 15, 16, 17, 26, 32, 64, 65, 128, 129, -1, 2**64 - 1]
REGIONS = ["in", "out", "nope", "", "IN"]
ODD_VALUES: list[Any] = ["16", 16.0, True, None, [16], {"x": 1}]
SHM_KEYS = ["shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"]
CHANGES = [
    "offset", "size", "region", "odd", "drop", "inline", "binary", "shape",
    "datatype", "classification",
]  # fmt: skip


@st.composite
def mutated_requests(draw: Any) -> ShmRequest:
    """A valid request, then 0-3 changes to its shared memory parameters (an
    offset, size or region changed, of another type, dropped; inline data or
    binary_data beside them) or to a tensor's shape and type."""
    request = draw(valid_requests())
    for _ in range(draw(st.integers(0, 3))):
        tensors = request.inputs + request.outputs
        tensor = draw(st.sampled_from(tensors))
        change = draw(st.sampled_from(CHANGES))
        parameters = tensor.parameters
        if change == "offset":
            parameters["shared_memory_offset"] = draw(st.sampled_from(OFFSETS))
        elif change == "size":
            parameters["shared_memory_byte_size"] = draw(st.sampled_from(SIZES))
        elif change == "region":
            parameters["shared_memory_region"] = draw(st.sampled_from(REGIONS))
        elif change == "odd":
            key = draw(st.sampled_from(SHM_KEYS))
            parameters[key] = draw(st.sampled_from(ODD_VALUES))
        elif change == "drop" and parameters:
            del parameters[draw(st.sampled_from(sorted(parameters)))]
        elif change == "inline" and tensor in request.inputs:
            if tensor.data is None:
                count = int(np.prod([d for d in tensor.shape if isinstance(d, int)]))
                tensor.data = (
                    STRINGS[: max(count, 0)]
                    if tensor.datatype == "BYTES"
                    else FLOATS[: max(min(count, 16), 0)].tolist()
                )
        elif change == "binary":
            parameters["binary_data"] = draw(st.sampled_from([True, False, None, 1]))
        elif change == "shape" and tensor in request.inputs:
            tensor.shape = draw(
                st.sampled_from([[4], [1, 4], [2], [0], [8], [1, 0], [-1], [5, 1]])
            )
        elif change == "datatype" and tensor in request.inputs:
            tensor.datatype = draw(st.sampled_from(["FP32", "INT32", "BYTES", "FP16"]))
        elif (
            change == "classification"
            and tensor in request.outputs
            # Triton 2.51 crashes classifying a BYTES output (tritonx refuses it:
            # tests/outputs/test_outputs.py).
            and request.model != "fuzz_bytes"
        ):
            parameters["classification"] = draw(st.sampled_from([1, 2, 0, -1, None]))
    return request
