"""Hypothesis strategies for gRPC fuzzing: valid ModelInferRequests, then damage.

Field-level mutations keep the message well-formed protobuf (so the server's own
validation is what answers); byte-level ones damage the serialized form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from http_strategies import DATATYPES, INTERESTING_INTS, MODELS, OUTPUTS
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

I64 = (-(2**63), 2**63 - 1)
U64 = (0, 2**64 - 1)
I32 = (-(2**31), 2**31 - 1)
U32 = (0, 2**32 - 1)


def _clamp(values: list[int], bounds: tuple[int, int]) -> list[int]:
    return [v for v in values if bounds[0] <= v <= bounds[1]]


i64s = st.sampled_from(_clamp(INTERESTING_INTS, I64)) | st.integers(*I64)
u64s = st.sampled_from(_clamp(INTERESTING_INTS, U64)) | st.integers(*U64)
dims = st.sampled_from(_clamp(INTERESTING_INTS, I64)) | st.integers(-3, 9)
names = st.sampled_from(
    ["INPUT0", "INPUT1", "INPUT2", "OUTPUT0", "OUTPUT1", "", "input0", "\u202e", "\x00"]
) | st.text(max_size=8)
model_names = st.sampled_from([*MODELS, "nope", "", "add_sub/1", "a" * 300]) | st.text(
    max_size=10
)
versions = st.sampled_from(["", "1", "0", "2", "-1", "99999999999999999999999", "x"])
PARAM_KEYS = [
    "custom", "priority", "timeout", "sequence_id", "sequence_start", "sequence_end",
    "binary_data_output", "binary_data", "binary_data_size", "headers", "triton_x",
    "triton_enable_empty_final_response", "shared_memory_region",
    "shared_memory_byte_size", "shared_memory_offset", "classification",
]  # fmt: skip
param_keys = st.sampled_from(PARAM_KEYS) | st.text(max_size=8)


def param_field(value: Any) -> str | None:
    """The InferParameter field that carries a Python ``value`` (None: none can:
    a JSON null, a list, an integer past 64 bits)."""
    if isinstance(value, bool):
        return "bool_param"
    if isinstance(value, str):
        return "string_param"
    if isinstance(value, float):
        return "double_param"
    if isinstance(value, int) and -(2**63) <= value < 2**64:
        return "int64_param" if value < 2**63 else "uint64_param"
    return None


def set_param(param: Any, data: st.DataObject) -> str:
    """Fills an InferParameter with any of its oneof kinds (or leaves it unset)."""
    kind = data.draw(
        st.sampled_from(["bool", "int64", "uint64", "double", "string", "unset"]),
        label="parameter kind",
    )
    if kind == "bool":
        param.bool_param = data.draw(st.booleans())
    elif kind == "int64":
        param.int64_param = data.draw(i64s)
    elif kind == "uint64":
        param.uint64_param = data.draw(u64s)
    elif kind == "double":
        param.double_param = data.draw(st.floats())
    elif kind == "string":
        param.string_param = data.draw(st.text(max_size=12))
    return kind


@st.composite
def infer_requests(draw: Any, models: Sequence[str] | None = None) -> Any:
    """A valid ModelInferRequest for one of ``models`` (default: all of MODELS),
    with raw or typed contents."""
    model = draw(st.sampled_from(sorted(models or MODELS)))
    max_batch, inputs = MODELS[model]
    request = service_pb2.ModelInferRequest(model_name=model)
    if draw(st.booleans()):
        request.id = draw(st.text(max_size=8))
    if draw(st.integers(0, 4)) == 0:
        request.model_version = "1"
    batch = [draw(st.integers(1, 3))] if max_batch else []
    width = draw(st.integers(0, 5))
    typed = draw(st.booleans())
    for name, datatype, model_dims in inputs:
        shape = batch + [width if d < 0 else d for d in model_dims]
        count = int(np.prod(shape))
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if datatype == "BYTES":
            items = draw(
                st.lists(st.binary(max_size=6), min_size=count, max_size=count)
            )
            if typed:
                tensor.contents.bytes_contents.extend(items)
            else:
                request.raw_input_contents.append(
                    b"".join(len(i).to_bytes(4, "little") + i for i in items)
                )
        else:
            values = draw(
                st.lists(st.floats(-1e6, 1e6, width=32), min_size=count, max_size=count)
            )
            if typed:
                tensor.contents.fp32_contents.extend(values)
            else:
                request.raw_input_contents.append(
                    np.asarray(values, dtype=np.float32).tobytes()
                )
    if draw(st.booleans()):
        for i in range(draw(st.integers(0, OUTPUTS[model]))):
            request.outputs.add(name=f"OUTPUT{i}")
    return request


FIELD_MUTATIONS = [
    "model_name", "model_version", "id", "parameter", "input_name", "datatype",
    "shape", "input_parameter", "contents", "raw", "drop_input", "extra_input",
    "output",
]  # fmt: skip


def mutate_request(request: Any, data: st.DataObject) -> str:
    """One field-level mutation of ``request`` in place; returns what it did."""
    kind = data.draw(st.sampled_from(FIELD_MUTATIONS), label="field mutation")
    tensors = request.inputs
    pick = data.draw(st.integers(0, max(len(tensors) - 1, 0)), label="input index")
    tensor = tensors[pick] if tensors else request.inputs.add(name="INPUT0")
    if kind == "model_name":
        request.model_name = data.draw(model_names)
    elif kind == "model_version":
        request.model_version = data.draw(versions)
    elif kind == "id":
        request.id = data.draw(st.text(max_size=20))
    elif kind == "parameter":
        set_param(request.parameters[data.draw(param_keys)], data)
    elif kind == "input_name":
        tensor.name = data.draw(names)
    elif kind == "datatype":
        tensor.datatype = data.draw(st.sampled_from(DATATYPES) | st.text(max_size=6))
    elif kind == "shape":
        del tensor.shape[:]
        tensor.shape.extend(data.draw(st.lists(dims, max_size=6)))
    elif kind == "input_parameter":
        set_param(tensor.parameters[data.draw(param_keys)], data)
    elif kind == "contents":
        field = data.draw(
            st.sampled_from(
                ["bool", "int", "int64", "uint", "uint64", "fp32", "fp64", "bytes"]
            )
        )
        values: Any = {
            "bool": st.lists(st.booleans(), max_size=8),
            "int": st.lists(st.integers(*I32), max_size=8),
            "int64": st.lists(i64s, max_size=8),
            "uint": st.lists(st.integers(*U32), max_size=8),
            "uint64": st.lists(u64s, max_size=8),
            "fp32": st.lists(st.floats(width=32), max_size=8),
            "fp64": st.lists(st.floats(), max_size=8),
            "bytes": st.lists(st.binary(max_size=8), max_size=8),
        }[field]
        getattr(tensor.contents, f"{field}_contents").extend(data.draw(values))
    elif kind == "raw":
        raws = request.raw_input_contents
        action = data.draw(st.sampled_from(["replace", "append", "pop", "resize"]))
        if action == "append" or not raws:
            raws.append(data.draw(st.binary(max_size=64)))
        elif action == "pop":
            raws.pop()
        else:
            index = data.draw(st.integers(0, len(raws) - 1))
            if action == "replace":
                raws[index] = data.draw(st.binary(max_size=64))
            else:
                size = data.draw(st.integers(0, len(raws[index]) + 16))
                raws[index] = (raws[index] + b"\xff" * 16)[:size]
    elif kind == "drop_input" and tensors:
        del request.inputs[pick]
    elif kind == "extra_input":
        extra = request.inputs.add(name=data.draw(names))
        extra.datatype = data.draw(st.sampled_from(DATATYPES))
        extra.shape.extend(data.draw(st.lists(dims, max_size=3)))
    else:
        output = request.outputs.add(name=data.draw(names))
        if data.draw(st.booleans()):
            set_param(output.parameters[data.draw(param_keys)], data)
    return kind


# -- the control plane ----------------------------------------------------------------

# A system shared memory region the differential test creates, so that some
# registrations succeed (and later calls see them) on both servers alike.
SHM_KEY = "/tritonx_diff_control"
SHM_BYTES = 64

NAME_CALLS = ("ModelReady", "ModelMetadata", "ModelConfig", "ModelStatistics")
SHM_CALLS = (
    "SystemSharedMemoryStatus", "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister", "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister",
)  # fmt: skip
CONTROL_CALLS = (
    "ServerLive", "ServerReady", "ServerMetadata", *NAME_CALLS, "RepositoryIndex",
    "RepositoryModelLoad", "RepositoryModelUnload", *SHM_CALLS, "TraceSetting",
    "LogSettings",
)  # fmt: skip
TRACE_KEYS = [
    "trace_level", "trace_rate", "trace_count", "log_frequency", "trace_mode",
    "trace_file", "trace_config",
]  # fmt: skip
TRACE_VALUES = [
    "", "OFF", "TIMESTAMPS", "TENSORS", "0", "1", "-1", "1000", "4294967296",
    "99999999999999999999", "x", "triton", "opentelemetry", " 1", "1.5",
]  # fmt: skip
# log_file is left out: Triton refuses to change it, and a path would be written.
LOG_KEYS = [
    "log_info", "log_warning", "log_error", "log_verbose_level", "log_format",
]  # fmt: skip
region_names = st.sampled_from(["r", "", "\x00", "a" * 200]) | st.text(max_size=6)
small_u64s = st.sampled_from([0, 1, SHM_BYTES - 1, SHM_BYTES, SHM_BYTES + 1]) | u64s


def _repository_parameter(param: Any, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["bool", "int64", "string", "bytes", "unset"]))
    if kind == "bool":
        param.bool_param = data.draw(st.booleans())
    elif kind == "int64":
        param.int64_param = data.draw(i64s)
    elif kind == "string":
        param.string_param = data.draw(st.text(max_size=12))
    elif kind == "bytes":
        param.bytes_param = data.draw(st.binary(max_size=12))


def _log_value(value: Any, key: str, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["bool", "uint32", "string", "unset"]))
    if kind == "bool":
        value.bool_param = data.draw(st.booleans())
    elif kind == "uint32":
        # A verbose level makes both servers log every call: 0, 1, or what is
        # taken as 0 (int32, negative as 0).
        value.uint32_param = data.draw(st.sampled_from([0, 1, 2**31, 2**32 - 1]))
    elif kind == "string":
        value.string_param = data.draw(
            st.sampled_from(["default", "ISO8601", "", "iso8601", "x", "1", "true"])
        )
    if key == "log_verbose_level" and value.WhichOneof("parameter_choice") is None:
        value.uint32_param = 0


def control_call(data: st.DataObject) -> tuple[str, Any]:
    """(method, request) for one control-plane RPC with odd names, versions,
    parameters and settings. Loads and unloads change nothing: the servers are not
    in EXPLICIT mode."""
    method = data.draw(st.sampled_from(CONTROL_CALLS), label="method")
    request = getattr(service_pb2, f"{method}Request")()
    if method in NAME_CALLS:
        request.name = data.draw(model_names)
        request.version = data.draw(versions)
    elif method == "RepositoryIndex":
        request.repository_name = data.draw(st.sampled_from(["", "x"]))
        request.ready = data.draw(st.booleans())
    elif method.startswith("RepositoryModel"):
        request.repository_name = data.draw(st.sampled_from(["", "x"]))
        request.model_name = data.draw(model_names)
        for _ in range(data.draw(st.integers(0, 2))):
            key = data.draw(st.sampled_from(["config", "file:1/model.py"]) | param_keys)
            _repository_parameter(request.parameters[key], data)
    elif method in SHM_CALLS:
        request.name = data.draw(region_names)
        if method == "SystemSharedMemoryRegister":
            request.key = data.draw(
                st.sampled_from([SHM_KEY, SHM_KEY, "/nope", ""]) | names
            )
            request.offset = data.draw(st.sampled_from([0, 0, 0, 1]) | small_u64s)
            request.byte_size = data.draw(small_u64s)
        elif method == "CudaSharedMemoryRegister":
            request.raw_handle = data.draw(st.binary(max_size=70))
            request.device_id = data.draw(
                st.sampled_from([0, 1, -1]) | st.integers(*I64)
            )
            request.byte_size = data.draw(small_u64s)
    elif method == "TraceSetting":
        if data.draw(st.booleans()):
            request.model_name = data.draw(model_names)
        for _ in range(data.draw(st.integers(0, 3))):
            key = data.draw(st.sampled_from(TRACE_KEYS) | st.text(max_size=6))
            values = data.draw(st.lists(st.sampled_from(TRACE_VALUES), max_size=3))
            request.settings[key].value.extend(values)
    elif method == "LogSettings":
        for _ in range(data.draw(st.integers(0, 3))):
            key = data.draw(st.sampled_from(LOG_KEYS) | st.text(max_size=6))
            if key != "log_file":
                _log_value(request.settings[key], key, data)
    return method, request
