"""The requests tritonx-perf sends: the model's inputs from its metadata and config,
shapes from --shape, the batch size, and data that is zero, random or read from a
JSON file in perf_analyzer's format:

    {"data": [{"INPUT0": [1, 2, 3], "INPUT1": {"content": [...], "shape": [3]}},
              {"INPUT0": {"b64": "..."}, ...}]}

Each entry of "data" is one request ("step"), used in turn; a list of lists of
entries (perf_analyzer's per-sequence streams) is read stream after stream."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritonx.dtypes import NUMPY_DTYPES, serialize_bytes
from tritonx.tools.perf.errors import PerfError


@dataclass
class TensorInfo:
    name: str
    datatype: str
    dims: list[int]  # without the batch dimension
    optional: bool = False


@dataclass
class ModelInfo:
    name: str
    version: str
    max_batch_size: int
    decoupled: bool
    sequence: bool
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)


@dataclass
class InputTensor:
    name: str
    datatype: str
    shape: list[int]  # the full shape sent, batch dimension included
    data: bytes  # wire form (BYTES: 4-byte little-endian length + bytes per element)


def model_info(
    metadata: dict[str, Any], config: dict[str, Any], version: str
) -> ModelInfo:
    max_batch = int(config.get("max_batch_size", 0) or 0)
    policy = config.get("model_transaction_policy") or {}
    optional = {
        str(i.get("name")): bool(i.get("optional", False))
        for i in config.get("input", [])
    }

    def tensors(entries: list[dict[str, Any]], with_optional: bool) -> list[TensorInfo]:
        out = []
        for entry in entries:
            shape = [int(d) for d in entry.get("shape", [])]
            if max_batch > 0 and shape:
                shape = shape[1:]  # the metadata's leading -1 is the batch dimension
            name = str(entry["name"])
            out.append(
                TensorInfo(
                    name,
                    str(entry["datatype"]),
                    shape,
                    optional.get(name, False) if with_optional else False,
                )
            )
        return out

    return ModelInfo(
        name=str(metadata.get("name", "")),
        version=version,
        max_batch_size=max_batch,
        decoupled=bool(policy.get("decoupled", False)),
        sequence="sequence_batching" in config,
        inputs=tensors(metadata.get("inputs", []), True),
        outputs=tensors(metadata.get("outputs", []), False),
    )


def parse_shapes(values: list[str]) -> dict[str, list[int]]:
    """--shape NAME:d1,d2 (repeatable); the name may itself contain ':'."""
    shapes: dict[str, list[int]] = {}
    for value in values:
        name, sep, dims = value.rpartition(":")
        if not sep or not name:
            raise PerfError(f"--shape '{value}' must be NAME:d1,d2,...")
        try:
            parsed = [int(d) for d in dims.split(",") if d.strip()]
        except ValueError:
            raise PerfError(f"--shape '{value}': dimensions must be integers") from None
        if not parsed or any(d < 0 for d in parsed):
            raise PerfError(f"--shape '{value}': dimensions must be non-negative")
        shapes[name] = parsed
    return shapes


def encode_bytes(items: list[bytes]) -> bytes:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return serialize_bytes(array)


def _encode(datatype: str, values: np.ndarray[Any, Any] | list[Any]) -> bytes:
    if datatype == "BYTES":
        return serialize_bytes(np.asarray(values, dtype=object))
    if datatype == "BF16":
        as_f32 = np.asarray(values, dtype=np.float32).reshape(-1)
        return (as_f32.view(np.uint32) >> 16).astype("<u2").tobytes()
    return np.asarray(values, dtype=NUMPY_DTYPES[datatype]).reshape(-1).tobytes()


def _element_count(shape: list[int]) -> int:
    return math.prod(shape) if shape else 1


def _generated(
    tensor: TensorInfo,
    shape: list[int],
    mode: str,
    rng: np.random.Generator,
    string_length: int,
    string_data: str | None,
) -> bytes:
    count = _element_count(shape)
    if tensor.datatype == "BYTES":
        if string_data is not None:
            items = [string_data.encode()] * count
        elif mode == "zero":
            items = [b"0" * string_length] * count
        else:
            letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", np.uint8)
            items = [rng.choice(letters, string_length).tobytes() for _ in range(count)]
        return encode_bytes(items)
    if tensor.datatype not in NUMPY_DTYPES:
        raise PerfError(f"input {tensor.name}: unsupported datatype {tensor.datatype}")
    if mode == "zero":
        return _encode(tensor.datatype, np.zeros(count))
    if tensor.datatype == "BOOL":
        return _encode("BOOL", rng.integers(0, 2, count).astype(bool))
    if tensor.datatype in ("FP16", "FP32", "FP64", "BF16"):
        return _encode(tensor.datatype, rng.random(count, dtype=np.float32))
    # Small non-negative integers stay valid for every integer type (and for models
    # that use them as indices).
    return _encode(tensor.datatype, rng.integers(0, 100, count))


def _resolve_dims(tensor: TensorInfo, shapes: dict[str, list[int]]) -> list[int] | None:
    if tensor.name in shapes:
        given = shapes[tensor.name]
        if len(given) != len(tensor.dims) or any(
            d >= 0 and d != g for d, g in zip(tensor.dims, given, strict=False)
        ):
            raise PerfError(
                f"--shape {tensor.name}:{','.join(map(str, given))} does not match the "
                f"model's dims {tensor.dims}"
            )
        return given
    if any(d < 0 for d in tensor.dims):
        return None
    return list(tensor.dims)


def _full_shape(info: ModelInfo, dims: list[int], batch: int) -> list[int]:
    return [batch, *dims] if info.max_batch_size > 0 else list(dims)


def check_batch(info: ModelInfo, batch: int) -> None:
    if batch < 1:
        raise PerfError("batch size (-b) must be at least 1")
    if info.max_batch_size == 0 and batch > 1:
        raise PerfError(
            f"can not specify batch size > 1 as the model '{info.name}' does not "
            "support batching"
        )
    if info.max_batch_size > 0 and batch > info.max_batch_size:
        raise PerfError(
            f"expecting batch size <= {info.max_batch_size} for model '{info.name}'"
        )


def generated_steps(
    info: ModelInfo,
    batch: int,
    shapes: dict[str, list[int]],
    mode: str,
    string_length: int,
    string_data: str | None,
    seed: int = 0,
) -> list[list[InputTensor]]:
    """One request of zero or random data (random: a few distinct requests)."""
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(1 if mode == "zero" else 4):
        step = []
        for tensor in info.inputs:
            if tensor.optional and tensor.name not in shapes:
                continue
            dims = _resolve_dims(tensor, shapes)
            if dims is None:
                raise PerfError(
                    f"input {tensor.name} contains dynamic shape {tensor.dims}, provide "
                    "shapes to send along with the request (--shape "
                    f"{tensor.name}:d1,d2,...)"
                )
            shape = _full_shape(info, dims, batch)
            step.append(
                InputTensor(
                    tensor.name,
                    tensor.datatype,
                    shape,
                    _generated(tensor, shape, mode, rng, string_length, string_data),
                )
            )
        steps.append(step)
    return steps


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            out.extend(_flatten(item))
        return out
    return [value]


def _step_tensor(
    info: ModelInfo,
    tensor: TensorInfo,
    value: Any,
    shapes: dict[str, list[int]],
    batch: int,
    where: str,
) -> InputTensor:
    shape: list[int] | None = None
    if isinstance(value, dict):
        if "shape" in value:
            try:
                shape = [int(d) for d in value["shape"]]
            except (TypeError, ValueError):
                raise PerfError(
                    f"{where}: 'shape' must be a list of integers"
                ) from None
        if "b64" in value:
            try:
                raw = base64.b64decode(value["b64"], validate=True)
            except (ValueError, TypeError):
                raise PerfError(f"{where}: 'b64' is not valid base64") from None
            if shape is None:
                shape = _resolve_dims(tensor, shapes)
            if shape is None:
                raise PerfError(
                    f"{where}: give the shape of b64 data ('shape' or --shape)"
                )
            full = _full_shape(info, shape, batch)
            if tensor.datatype == "BYTES":
                data = encode_bytes([raw]) * batch
            else:
                data = raw * batch
                itemsize = NUMPY_DTYPES[tensor.datatype].itemsize
                if len(raw) != _element_count(shape) * itemsize:
                    raise PerfError(
                        f"{where}: {len(raw)} bytes of b64 data do not fill shape {shape}"
                    )
            return InputTensor(tensor.name, tensor.datatype, full, data)
        if "content" not in value:
            raise PerfError(
                f"{where}: expected a list, or an object with 'content' or 'b64'"
            )
        value = value["content"]
    flat = _flatten(value)
    if shape is None:
        shape = _resolve_dims(tensor, shapes)
    if shape is None:
        dynamic = [i for i, d in enumerate(tensor.dims) if d < 0]
        fixed = _element_count([d for d in tensor.dims if d >= 0])
        if len(dynamic) == 1 and fixed and len(flat) % fixed == 0:
            shape = list(tensor.dims)
            shape[dynamic[0]] = len(flat) // fixed
        else:
            raise PerfError(
                f"{where}: the shape of {tensor.name} {tensor.dims} is not known; give "
                "it with 'shape' in the data file or --shape"
            )
    if len(flat) != _element_count(shape):
        raise PerfError(
            f"{where}: {len(flat)} values do not fill the shape {shape} of {tensor.name}"
        )
    try:
        one = _encode(tensor.datatype, flat)
    except (ValueError, TypeError, OverflowError) as exc:
        raise PerfError(f"{where}: values are not {tensor.datatype}: {exc}") from None
    return InputTensor(
        tensor.name, tensor.datatype, _full_shape(info, shape, batch), one * batch
    )


def json_steps(
    path: Path,
    info: ModelInfo,
    batch: int,
    shapes: dict[str, list[int]],
    skip: frozenset[str] = frozenset(),
) -> tuple[list[list[InputTensor]], list[int]]:
    """The file's requests in order, and the length of each of its streams (a list
    of lists: perf_analyzer's per-sequence streams; [] for a flat list). Members
    named in ``skip`` are not inputs (--fixed-schedule's timestamp)."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise PerfError(f"cannot read input data file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise PerfError(f"input data file {path} is not valid JSON: {exc}") from None
    entries = document.get("data") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise PerfError(f'input data file {path}: expected {{"data": [ ... ]}}')
    streams: list[int] = []
    if all(isinstance(e, list) for e in entries):
        if not all(entries):
            raise PerfError(f"input data file {path}: a stream has no steps")
        streams = [len(stream) for stream in entries]
        entries = [step for stream in entries for step in stream]
    by_name = {t.name: t for t in info.inputs}
    steps = []
    for index, entry in enumerate(entries):
        where = f"input data file {path}, step {index}"
        if not isinstance(entry, dict):
            raise PerfError(f"{where}: expected an object of input name -> data")
        for name in entry:
            if name not in by_name and name not in skip:
                raise PerfError(f"{where}: the model has no input '{name}'")
        step = []
        for tensor in info.inputs:
            if tensor.name not in entry:
                if tensor.optional:
                    continue
                raise PerfError(f"{where}: input '{tensor.name}' is missing")
            step.append(
                _step_tensor(info, tensor, entry[tensor.name], shapes, batch, where)
            )
        steps.append(step)
    return steps, streams


def _directory_tensor(
    info: ModelInfo,
    tensor: TensorInfo,
    raw: bytes,
    shapes: dict[str, list[int]],
    batch: int,
    where: str,
) -> InputTensor:
    """One input's file of a data directory: raw row-major bytes, or for BYTES one
    element per line, for a batch-1 request."""
    if tensor.datatype == "BYTES":
        items = raw.decode("utf-8", "surrogateescape").splitlines()
        count = len(items)
    elif tensor.datatype in NUMPY_DTYPES:
        itemsize = NUMPY_DTYPES[tensor.datatype].itemsize
        if len(raw) % itemsize:
            raise PerfError(
                f"{where}: {len(raw)} bytes are not a whole number of "
                f"{tensor.datatype} elements"
            )
        count = len(raw) // itemsize
    else:
        raise PerfError(f"{where}: unsupported datatype {tensor.datatype}")
    shape = _resolve_dims(tensor, shapes)
    if shape is None:
        dynamic = [i for i, d in enumerate(tensor.dims) if d < 0]
        fixed = _element_count([d for d in tensor.dims if d >= 0])
        if len(dynamic) != 1 or not fixed or count % fixed:
            raise PerfError(
                f"{where}: the shape of {tensor.name} {tensor.dims} is not known; "
                f"give it with --shape {tensor.name}:d1,d2,..."
            )
        shape = list(tensor.dims)
        shape[dynamic[0]] = count // fixed
    if count != _element_count(shape):
        raise PerfError(
            f"{where}: {count} elements do not fill the shape {shape} of {tensor.name}"
        )
    one = (
        encode_bytes([item.encode("utf-8", "surrogateescape") for item in items])
        if tensor.datatype == "BYTES"
        else raw
    )
    return InputTensor(
        tensor.name, tensor.datatype, _full_shape(info, shape, batch), one * batch
    )


def directory_steps(
    path: Path, info: ModelInfo, batch: int, shapes: dict[str, list[int]]
) -> list[list[InputTensor]]:
    """perf_analyzer's data directory: a file per input named after it (an optional
    input without a file is not sent), making one request."""
    step = []
    for tensor in info.inputs:
        file = path / tensor.name
        where = f"input data directory {path}, file {tensor.name}"
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            if tensor.optional:
                continue
            raise PerfError(f"{where}: not found (one file per input)") from None
        except OSError as exc:
            raise PerfError(f"{where}: cannot read it: {exc.strerror}") from None
        step.append(_directory_tensor(info, tensor, raw, shapes, batch, where))
    return [step]


def data_steps(
    sources: list[str],
    info: ModelInfo,
    batch: int,
    shapes: dict[str, list[int]],
    skip: frozenset[str] = frozenset(),
) -> tuple[list[list[InputTensor]], list[int]]:
    """The requests of ``--input-data`` given once or more (perf_analyzer's rule:
    data files and directories are used together, in order; "zero" and "random"
    stand alone): the steps, and the stream lengths of JSON files with streams."""
    parts: list[tuple[list[list[InputTensor]], list[int]]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            parts.append((directory_steps(path, info, batch, shapes), []))
        elif path.exists():
            parts.append(json_steps(path, info, batch, shapes, skip))
        else:
            raise PerfError(
                f"cannot read input data {source}: no such file or directory (give "
                "zero, random, a JSON data file or a directory)"
            )
    steps = [step for more, _ in parts for step in more]
    if not any(more_streams for _, more_streams in parts):
        return steps, []
    # Beside files with streams, a flat file or a directory is one stream.
    return steps, [n for more, ms in parts for n in (ms or [len(more)])]


def request_steps(
    sources: list[str],
    zero: bool,
    info: ModelInfo,
    batch: int,
    shapes: dict[str, list[int]],
    string_length: int,
    string_data: str | None,
    seed: int,
    skip: frozenset[str] = frozenset(),
) -> tuple[list[list[InputTensor]], list[int]]:
    """The run's requests from ``--input-data`` (repeatable), ``-z`` and
    ``--data-directory``, and the stream lengths (see ``data_steps``)."""
    generated = [s for s in sources if s in ("zero", "random")]
    files = [s for s in sources if s not in ("zero", "random")]
    if files and (zero or generated):
        raise PerfError(
            "zero or random input can't be set when data files or a data directory "
            "are provided"
        )
    if files:
        return data_steps(files, info, batch, shapes, skip)
    mode = "zero" if zero or "zero" in generated else "random"
    return (
        generated_steps(info, batch, shapes, mode, string_length, string_data, seed),
        [],
    )
