"""Triton's L0_infer_zero QA (the Python-backend part) as differential tests:
identity models of three inputs, each of which may have no elements, in FP32,
FP16, BYTES and BOOL, batching (batches of 1 and 8) and not, alone and behind an
ensemble, over HTTP (binary and JSON), gRPC and gRPC streaming. Each case runs
against tritonx and, when TRITONX_REFERENCE_CMD is given, against Triton 2.51, and
both must echo every tensor with its shape.

One-input FP32 and BYTES models with an empty tensor are
test_qa_input_handling.py's (test_zero_elements_*)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, run_either
from testmodels import write_model
from tritonclient.utils import InferenceServerException

# Every OUTPUTi is INPUTi.
IDENTITY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import json
        self.count = len(json.loads(args["model_config"])["input"])

    def execute(self, requests):
        return [pb_utils.InferenceResponse([
            pb_utils.Tensor(f"OUTPUT{i}",
                            pb_utils.get_input_tensor_by_name(r, f"INPUT{i}").as_numpy())
            for i in range(self.count)]) for r in requests]
"""

# Model name prefix -> (config data type, client data type, numpy type, rank).
KINDS = {
    "ff": ("TYPE_FP32", "FP32", np.float32, 1),
    "hh": ("TYPE_FP16", "FP16", np.float16, 2),
    "oo": ("TYPE_STRING", "BYTES", np.object_, 2),
    "oo1": ("TYPE_STRING", "BYTES", np.object_, 1),
    "bb": ("TYPE_BOOL", "BOOL", np.bool_, 1),
}


def _config(name: str, kind: str, count: int, max_batch: int) -> str:
    data_type, _, _, rank = KINDS[kind]
    dims = ", ".join(["-1"] * rank)
    tensors = {
        direction: ", ".join(
            f'{{ name: "{direction.upper()}{i}", data_type: {data_type}, '
            f"dims: [ {dims} ] }}"
            for i in range(count)
        )
        for direction in ("input", "output")
    }
    return (
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
        f"input [ {tensors['input']} ]\noutput [ {tensors['output']} ]\n"
    )


def _ensemble(name: str, step: str, count: int, max_batch: int) -> str:
    """One step running ``step``, every tensor passed straight through (Triton's
    "simple_zero" ensembles)."""
    tensors = {
        direction: ", ".join(
            f'{{ name: "{direction.upper()}{i}", data_type: TYPE_FP32, dims: [ -1 ] }}'
            for i in range(count)
        )
        for direction in ("input", "output")
    }
    inputs = " ".join(
        f'input_map {{ key: "INPUT{i}" value: "INPUT{i}" }}' for i in range(count)
    )
    outputs = " ".join(
        f'output_map {{ key: "OUTPUT{i}" value: "OUTPUT{i}" }}' for i in range(count)
    )
    return (
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {max_batch}\n'
        f"input [ {tensors['input']} ]\noutput [ {tensors['output']} ]\n"
        f'ensemble_scheduling {{ step [ {{ model_name: "{step}" model_version: -1 '
        f"{inputs} {outputs} }} ] }}\n"
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_zero")
    for kind in KINDS:
        for count in (1, 3):
            for suffix, max_batch in (("", 8), ("_nobatch", 0)):
                name = f"{kind}{count}{suffix}"
                write_model(root, name, _config(name, kind, count, max_batch), IDENTITY)
    for suffix, max_batch in (("", 8), ("_nobatch", 0)):
        name = f"simple_zero{suffix}"
        (root / name / "1").mkdir(parents=True)
        config = _ensemble(name, f"ff3{suffix}", 3, max_batch)
        (root / name / "config.pbtxt").write_text(config)
    return root


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[RunningServer]:
    with run_either(request.param, repo) as running:
        yield running


def _data(kind: str, shape: list[int], seed: int) -> np.ndarray:
    _, _, dtype, _ = KINDS[kind]
    values = np.arange(seed, seed + int(np.prod(shape)))
    if dtype == np.object_:
        return np.array([str(v).encode() for v in values], dtype=object).reshape(shape)
    if dtype == np.bool_:
        return (values % 2 == 0).reshape(shape)
    return values.astype(dtype).reshape(shape)


def _round_trip(
    server: RunningServer, model: str, kind: str, tensors: list[np.ndarray]
) -> dict[str, Any]:
    """What each transport answers: the outputs' (shape, values), or the error."""
    datatype = KINDS[kind][1]
    seen: dict[str, Any] = {}
    answers: queue.Queue[Any] = queue.Queue()
    transports = ["http binary", "http json", "grpc", "grpc stream"]
    if datatype == "FP16":
        transports.remove("http json")  # JSON has no FP16 values
    for transport in transports:
        module: Any = httpclient if transport.startswith("http") else grpcclient
        inputs = []
        for i, data in enumerate(tensors):
            tensor = module.InferInput(f"INPUT{i}", list(data.shape), datatype)
            if transport.startswith("http"):
                tensor.set_data_from_numpy(data, binary_data=transport == "http binary")
            else:
                tensor.set_data_from_numpy(data)
            inputs.append(tensor)
        if transport.startswith("http"):
            outputs = [
                httpclient.InferRequestedOutput(
                    f"OUTPUT{i}", binary_data=transport == "http binary"
                )
                for i in range(len(tensors))
            ]
        else:
            outputs = [
                grpcclient.InferRequestedOutput(f"OUTPUT{i}")
                for i in range(len(tensors))
            ]
        url = server.http_url if module is httpclient else server.grpc_url
        client = module.InferenceServerClient(url)
        try:
            if transport == "grpc stream":
                client.start_stream(
                    callback=lambda result, error: answers.put(error or result)
                )
                client.async_stream_infer(model, inputs, outputs=outputs)
                result = answers.get(timeout=60)
                client.stop_stream()
                if isinstance(result, InferenceServerException):
                    raise result
            else:
                result = client.infer(model, inputs, outputs=outputs)
            seen[transport] = [
                _described(result.as_numpy(f"OUTPUT{i}")) for i in range(len(tensors))
            ]
        except InferenceServerException as error:
            seen[transport] = (error.status(), error.message())
        finally:
            client.close()
    return seen


def _described(array: np.ndarray) -> tuple[list[int], str]:
    """Shape and values; BYTES as bytes (tritonclient decodes JSON ones to str)."""
    if array.dtype == np.object_:
        array = np.vectorize(
            lambda v: v.encode() if isinstance(v, str) else v, otypes=[object]
        )(array)
    return (list(array.shape), repr(array.tolist()))


# L0_infer_zero's shapes (without the batch dimension), by model kind.
SHAPES: list[tuple[str, list[list[int]]]] = [
    ("ff", [[1]]),
    ("ff", [[0]]),
    ("ff", [[1], [2], [1]]),
    ("ff", [[0], [0], [0]]),
    ("ff", [[0], [0], [1]]),
    ("ff", [[0], [1], [0]]),
    ("ff", [[1], [0], [0]]),
    ("ff", [[1], [0], [1]]),
    ("hh", [[2, 2]]),
    ("hh", [[1, 0]]),
    ("hh", [[0, 1]]),
    ("hh", [[0, 0]]),
    ("hh", [[2, 2], [2, 2], [1, 1]]),
    ("hh", [[0, 0], [0, 0], [0, 0]]),
    ("hh", [[0, 1], [0, 1], [2, 3]]),
    ("hh", [[1, 0], [1, 3], [0, 1]]),
    ("hh", [[1, 1], [3, 0], [0, 0]]),
    ("hh", [[1, 1], [0, 6], [2, 2]]),
    ("oo1", [[2]]),
    ("oo1", [[0]]),
    ("oo", [[2, 2], [2, 2], [1, 1]]),
    ("oo", [[0, 0], [0, 0], [0, 0]]),
    ("oo", [[0, 1], [0, 1], [2, 3]]),
    ("oo", [[1, 0], [1, 3], [0, 1]]),
    ("oo", [[1, 1], [3, 0], [0, 0]]),
    ("oo", [[1, 1], [0, 6], [2, 2]]),
    ("bb", [[10]]),
    ("bb", [[0]]),
]


def _case_id(case: tuple[str, list[list[int]]]) -> str:
    kind, shapes = case
    return kind + "-" + "_".join("x".join(map(str, shape)) for shape in shapes)


def _check(
    server: RunningServer, model: str, kind: str, shapes: list[list[int]]
) -> None:
    tensors = [_data(kind, shape, 10 * i) for i, shape in enumerate(shapes)]
    seen = _round_trip(server, model, kind, tensors)
    expected = [_described(data) for data in tensors]
    assert seen == dict.fromkeys(seen, expected)
    assert len(seen) >= 3


@pytest.mark.parametrize("case", SHAPES, ids=[_case_id(case) for case in SHAPES])
def test_zero_sized_tensors(
    server: RunningServer, case: tuple[str, list[list[int]]]
) -> None:
    """Each shape set to the non-batching model, then as batches of 1 and of 8 to
    the batching one."""
    kind, shapes = case
    model = f"{kind}{len(shapes)}"
    _check(server, f"{model}_nobatch", kind, shapes)
    for batch in (1, 8):
        _check(server, model, kind, [[batch, *shape] for shape in shapes])


ENSEMBLE_SHAPES = [
    shapes for kind, shapes in SHAPES if kind == "ff" and len(shapes) == 3
]


@pytest.mark.parametrize("shapes", ENSEMBLE_SHAPES)
def test_zero_sized_tensors_through_an_ensemble(
    server: RunningServer, shapes: list[list[int]]
) -> None:
    """L0_infer_zero's simple_zero ensembles: the same through one ensemble step."""
    _check(server, "simple_zero_nobatch", "ff", shapes)
    for batch in (1, 8):
        _check(server, "simple_zero", "ff", [[batch, *shape] for shape in shapes])
