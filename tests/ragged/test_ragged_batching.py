"""Ragged batching (allow_ragged_batch, batch_input, batch_output) end to end.

ONNX models built here are served by tritonx and called through tritonclient from
concurrent clients, so that requests of different lengths meet in one batch. The bare
onnxruntime, run on each request alone, is the oracle for its answer. A python model
shows what Triton 2.51 (the reference) gives python models: requests of different
shapes in one execute call, and no batch-input tensor.
"""

from __future__ import annotations

import json
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from onnx import TensorProto, helper, numpy_helper
from serverutil import RunningServer, run_either, run_server

from tritonx.config import parse_config_text
from tritonx.config.onnx_complete import check_onnx_consistency
from tritonx.errors import InvalidArgumentError

F32 = TensorProto.FLOAT
I32 = TensorProto.INT32
I64 = TensorProto.INT64


def _save(repo: Path, name: str, graph: onnx.GraphProto, config: str) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (repo / name / "1").mkdir(parents=True)
    path = repo / name / "1" / "model.onnx"
    onnx.save(model, str(path))
    (repo / name / "config.pbtxt").write_text(textwrap.dedent(config))
    return path


def _const(name: str, value: Any, dtype: Any) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype), name)


def _sum_graph() -> onnx.GraphProto:
    """SUM[i] = sum(X[OFFSETS[i]:OFFSETS[i+1]]) from a cumulative sum with a
    leading zero; Y = 2 * X, the whole batch's elements (a batch output)."""
    nodes = [
        helper.make_node("CumSum", ["X", "axis0"], ["C"]),
        helper.make_node("Concat", ["zero", "C"], ["C0"], axis=0),
        helper.make_node("Slice", ["OFFSETS", "one", "end"], ["HI_AT"]),
        helper.make_node("Slice", ["OFFSETS", "start", "minus_one"], ["LO_AT"]),
        helper.make_node("Gather", ["C0", "HI_AT"], ["HI"], axis=0),
        helper.make_node("Gather", ["C0", "LO_AT"], ["LO"], axis=0),
        helper.make_node("Sub", ["HI", "LO"], ["S"]),
        helper.make_node("Unsqueeze", ["S", "one"], ["SUM"]),
        helper.make_node("Mul", ["X", "two"], ["Y"]),
    ]
    constants = [
        _const("axis0", 0, np.int64),
        _const("zero", [0], np.float32),
        _const("one", [1], np.int64),
        _const("end", [2**62], np.int64),
        _const("start", [0], np.int64),
        _const("minus_one", [-1], np.int64),
        _const("two", 2, np.float32),
    ]
    return helper.make_graph(
        nodes,
        "ragged_sum",
        [
            helper.make_tensor_value_info("X", F32, [None]),
            helper.make_tensor_value_info("OFFSETS", I32, [None]),
        ],
        [
            helper.make_tensor_value_info("SUM", F32, [None, 1]),
            helper.make_tensor_value_info("Y", F32, [None]),
        ],
        constants,
    )


SUM_CONFIG = """
name: "ragged_sum"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]
batch_input [ { kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO target_name: "OFFSETS"
                data_type: TYPE_INT32 source_input: "X" } ]
output [ { name: "SUM" data_type: TYPE_FP32 dims: [ 1 ] },
         { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
batch_output [ { target_name: "Y" kind: BATCH_SCATTER_WITH_INPUT_SHAPE
                 source_input: "X" } ]
dynamic_batching { max_queue_delay_microseconds: 2000000 }
"""

# The same model under the sequence batcher: sequences of different lengths are
# batched together by the oldest strategy (one instance, so that the four
# sequences of the test share its slots and make its preferred batch).
SEQ_SUM_CONFIG = SUM_CONFIG.replace(
    'name: "ragged_sum"', 'name: "ragged_seq_sum"'
).replace(
    "dynamic_batching { max_queue_delay_microseconds: 2000000 }",
    "sequence_batching { oldest { max_candidate_sequences: 8 preferred_batch_size: [ 4 ] "
    "max_queue_delay_microseconds: 10000000 } }\n"
    "instance_group [ { kind: KIND_CPU count: 1 } ]",
)

# Batch input kinds the probe echoes: (target, kind, config type, output type).
PROBED = [
    ("EC", "BATCH_ELEMENT_COUNT", "INT32", I32),
    ("AEC", "BATCH_ACCUMULATED_ELEMENT_COUNT", "INT32", I32),
    ("AECZ", "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", "FP32", F32),
    ("MAXS", "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", "INT32", I32),
    ("IS", "BATCH_ITEM_SHAPE", "INT32", I32),
    ("ISF", "BATCH_ITEM_SHAPE_FLATTEN", "INT32", I32),
]


def _probe_graph() -> onnx.GraphProto:
    """Every batch input, flattened, broadcast to each batch item: O_<name> has
    shape [batch items, length] (MAXS gives its shape, int64: its values mean
    nothing). The item count is BATCH_ITEM_SHAPE's first dim."""
    nodes = [
        helper.make_node("Shape", ["IS"], ["IS_SHAPE"]),
        helper.make_node("Slice", ["IS_SHAPE", "zero", "one"], ["ITEMS"]),
    ]
    outputs = []
    for name, _, _, elem in PROBED:
        flat = f"{name}_FLAT"
        if name == "MAXS":
            nodes.append(helper.make_node("Shape", [name], [flat]))
            elem = I64
        else:
            nodes.append(helper.make_node("Reshape", [name, "minus_one"], [flat]))
        nodes += [
            helper.make_node("Shape", [flat], [f"{name}_LEN"]),
            helper.make_node(
                "Concat", ["ITEMS", f"{name}_LEN"], [f"{name}_TO"], axis=0
            ),
            helper.make_node("Unsqueeze", [flat, "zero"], [f"{name}_ROW"]),
            helper.make_node("Expand", [f"{name}_ROW", f"{name}_TO"], [f"O_{name}"]),
        ]
        outputs.append(helper.make_tensor_value_info(f"O_{name}", elem, [None, None]))
    inputs = [helper.make_tensor_value_info("X", F32, [None])]
    for name, _, _, elem in PROBED:
        dims: list[int | None] = [None, None] if name == "IS" else [None]
        inputs.append(helper.make_tensor_value_info(name, elem, dims))
    constants = [
        _const("zero", [0], np.int64),
        _const("one", [1], np.int64),
        _const("minus_one", [-1], np.int64),
    ]
    return helper.make_graph(nodes, "ragged_probe", inputs, outputs, constants)


def _probe_config() -> str:
    batch_inputs = ",\n".join(
        f'{{ kind: {kind} target_name: "{name}" data_type: TYPE_{dtype} '
        'source_input: "X" }'
        for name, kind, dtype, _ in PROBED
    )
    outputs = ",\n".join(
        f'{{ name: "O_{name}" data_type: TYPE_{"INT64" if name == "MAXS" else dtype} '
        "dims: [ -1 ] }"
        for name, _, dtype, _ in PROBED
    )
    # max_batch_size 4: the three requests of test_batch_input_kinds (batch sizes
    # 1 + 2 + 1) fill one batch, which leaves at once; the long delay only makes
    # sure that none of them leaves alone.
    return f"""
name: "ragged_probe"
backend: "onnxruntime"
max_batch_size: 4
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true }} ]
batch_input [ {batch_inputs} ]
output [ {outputs} ]
dynamic_batching {{ max_queue_delay_microseconds: 5000000 }}
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    repo = tmp_path_factory.mktemp("ragged") / "repo"
    return {
        "repo": repo,
        "ragged_sum": _save(repo, "ragged_sum", _sum_graph(), SUM_CONFIG),
        "ragged_probe": _save(repo, "ragged_probe", _probe_graph(), _probe_config()),
        "ragged_seq_sum": _save(repo, "ragged_seq_sum", _sum_graph(), SEQ_SUM_CONFIG),
    }


@pytest.fixture(scope="module")
def server(models: dict[str, Path]) -> Iterator[RunningServer]:
    with run_server(models["repo"]) as running:
        yield running


def _concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Runs the calls on threads released together; their results in order."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # reported by the test thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def _infer(server: RunningServer, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        tensor = httpclient.InferInput("X", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor])
        response = result.get_response()
        return {o["name"]: result.as_numpy(o["name"]) for o in response["outputs"]}
    finally:
        client.close()


def _infer_step(
    server: RunningServer, x: np.ndarray, sequence: int, start: bool, end: bool
) -> dict[str, np.ndarray]:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        tensor = httpclient.InferInput("X", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(
            "ragged_seq_sum",
            [tensor],
            sequence_id=sequence,
            sequence_start=start,
            sequence_end=end,
        )
        return {name: result.as_numpy(name) for name in ("SUM", "Y")}
    finally:
        client.close()


def _stats(server: RunningServer, model: str) -> dict[str, Any]:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats: dict[str, Any] = client.get_inference_statistics(model)["model_stats"][0]
        return stats
    finally:
        client.close()


def test_requests_of_different_lengths_batch_and_match_onnxruntime(
    server: RunningServer, models: dict[str, Path]
) -> None:
    rng = np.random.default_rng(7)
    # Small integers: the sums are exact whatever the batch's cumulative sum holds.
    inputs = [rng.integers(-50, 50, (1, n)).astype(np.float32) for n in range(1, 9)]
    before = _stats(server, "ragged_sum")
    results = _concurrently(
        [lambda x=x: _infer(server, "ragged_sum", x) for x in inputs]
    )
    after = _stats(server, "ragged_sum")

    session = ort.InferenceSession(str(models["ragged_sum"]))
    for x, result in zip(inputs, results, strict=True):
        n = x.shape[1]
        alone = session.run(
            None, {"X": x.reshape(-1), "OFFSETS": np.array([0, n], np.int32)}
        )
        np.testing.assert_array_equal(result["SUM"], alone[0])
        assert result["SUM"].shape == (1, 1)
        # The batch output takes the request's input shape.
        assert result["Y"].shape == (1, n)
        np.testing.assert_array_equal(result["Y"], alone[1].reshape(1, n))

    requests = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == len(inputs)
    assert executions < requests  # batched, whatever their lengths


def test_sequences_of_different_lengths_batch_under_the_sequence_batcher(
    server: RunningServer, models: dict[str, Path]
) -> None:
    """Four sequences, two steps each, every step a different length: each step
    of all four runs as one ragged batch and answers as onnxruntime does alone."""
    rng = np.random.default_rng(11)
    steps = [
        [rng.integers(-50, 50, (1, 2 * s + n + 1)).astype(np.float32) for s in range(4)]
        for n in range(2)
    ]
    before = _stats(server, "ragged_seq_sum")
    results = [
        _concurrently(
            [
                lambda x=x, s=s, n=n: _infer_step(server, x, 100 + s, n == 0, n == 1)
                for s, x in enumerate(step)
            ]
        )
        for n, step in enumerate(steps)
    ]
    after = _stats(server, "ragged_seq_sum")

    session = ort.InferenceSession(str(models["ragged_seq_sum"]))
    for step, answers in zip(steps, results, strict=True):
        for x, result in zip(step, answers, strict=True):
            n = x.shape[1]
            alone = session.run(
                None, {"X": x.reshape(-1), "OFFSETS": np.array([0, n], np.int32)}
            )
            np.testing.assert_array_equal(result["SUM"], alone[0])
            assert result["Y"].shape == (1, n)
            np.testing.assert_array_equal(result["Y"], alone[1].reshape(1, n))
    requests = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == 8
    assert executions == 2  # each step's four lengths made one batch


def _expected_probe(shapes: list[tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Triton's batch inputs for requests of these shapes, in batch order."""
    counts = [int(np.prod(s)) for s in shapes]
    item_shapes = [list(s[1:]) for s in shapes for _ in range(s[0])]
    return {
        "EC": np.array(counts),
        "AEC": np.cumsum(counts),
        "AECZ": np.concatenate([[0], np.cumsum(counts)]),
        "MAXS": np.array([max(counts)]),
        "IS": np.array(item_shapes).reshape(-1),
        "ISF": np.array(item_shapes).reshape(-1),
    }


def _check_probe(result: dict[str, np.ndarray], shapes: list[tuple[int, ...]]) -> None:
    expected = _expected_probe(shapes)
    for name, _, dtype, _ in PROBED:
        got = result[f"O_{name}"]
        want = "int64" if name == "MAXS" else dtype.lower().replace("fp", "float")
        assert got.dtype == np.dtype(want), name
        # One row per batch item of this request, each the whole batch's values.
        for row in got:
            np.testing.assert_array_equal(row, expected[name], err_msg=name)


def test_batch_input_kinds(server: RunningServer) -> None:
    # Distinct element counts (2, 6, 5) identify each request's place in the batch.
    shapes = [(1, 2), (2, 3), (1, 5)]
    before = _stats(server, "ragged_probe")
    results = _concurrently(
        [
            lambda s=s: _infer(server, "ragged_probe", np.ones(s, np.float32))
            for s in shapes
        ]
    )
    after = _stats(server, "ragged_probe")
    assert after["execution_count"] - before["execution_count"] == 1

    order = [int(c) for c in results[0]["O_EC"][0]]
    by_count = {int(np.prod(s)): s for s in shapes}
    batch_shapes = [by_count[c] for c in order]
    for shape, result in zip(shapes, results, strict=True):
        assert result["O_EC"].shape[0] == shape[0]
        _check_probe(result, batch_shapes)


def test_batch_inputs_of_a_lone_request(server: RunningServer) -> None:
    # Batch size 3 counts its 12 elements once, and gives three item rows.
    result = _infer(server, "ragged_probe", np.ones((3, 4), np.float32))
    _check_probe(result, [(3, 4)])
    np.testing.assert_array_equal(result["O_AECZ"][0], [0, 12])
    np.testing.assert_array_equal(result["O_IS"][0], [4, 4, 4])


def test_lone_request_gets_batch_output_with_its_shape(server: RunningServer) -> None:
    x = np.arange(5, dtype=np.float32).reshape(1, 5)
    result = _infer(server, "ragged_sum", x)
    np.testing.assert_array_equal(result["SUM"], [[10.0]])
    np.testing.assert_array_equal(result["Y"], 2 * x)


# -- load-time checks (Triton's onnxruntime backend) --------------------------------


def test_ragged_input_must_be_one_dimensional_in_the_graph(tmp_path: Path) -> None:
    graph = _sum_graph()
    graph.input[0].CopyFrom(helper.make_tensor_value_info("X", F32, [None, None]))
    path = tmp_path / "m.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    config = parse_config_text(SUM_CONFIG, "config.pbtxt")
    with pytest.raises(InvalidArgumentError) as info:
        check_onnx_consistency(config, path)
    assert str(info.value) == (
        "unable to load model 'ragged_sum', configuration expects model provides "
        "input with shape [-1]  for ragged input 'X', model provides [-1,-1]"
    )


# -- python backend: what Triton 2.51 gives a python model --------------------------

PY_MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            index = pb_utils.get_input_tensor_by_name(request, "INDEX")
            info = {
                "requests": len(requests),
                "inputs": sorted(t.name() for t in request.inputs()),
                "shape": list(x.shape),
                "index": None if index is None else index.as_numpy().tolist(),
            }
            rows = np.array([[json.dumps(info).encode()]] * x.shape[0], dtype=object)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUTPUT", x), pb_utils.Tensor("INFO", rows)]
                )
            )
        return responses
"""

PY_CONFIG = """
name: "ragged_py"
backend: "python"
max_batch_size: 3
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]
batch_input [ { kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: "INDEX"
                data_type: TYPE_FP32 source_input: "INPUT" } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] },
         { name: "INFO" data_type: TYPE_STRING dims: [ 1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 5000000 }
"""


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def py_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("ragged_py") / "repo"
    (repo / "ragged_py" / "1").mkdir(parents=True)
    (repo / "ragged_py" / "config.pbtxt").write_text(PY_CONFIG)
    (repo / "ragged_py" / "1" / "model.py").write_text(PY_MODEL)
    with run_either(request.param, repo) as running:
        yield running


def test_python_model_gets_ragged_requests_in_one_execute(
    py_server: RunningServer,
) -> None:
    lengths = [2, 3, 5]

    def call(n: int) -> dict[str, Any]:
        client = httpclient.InferenceServerClient(py_server.http_url)
        try:
            x = np.arange(n, dtype=np.float32).reshape(1, n)
            tensor = httpclient.InferInput("INPUT", [1, n], "FP32")
            tensor.set_data_from_numpy(x)
            result = client.infer("ragged_py", [tensor])
            np.testing.assert_array_equal(result.as_numpy("OUTPUT"), x)
            info: dict[str, Any] = json.loads(result.as_numpy("INFO")[0][0])
            return info
        finally:
            client.close()

    infos = _concurrently([lambda n=n: call(n) for n in lengths])
    # One execute call with all three requests, each with its own shape; the batch
    # input is not among a python model's inputs.
    for n, info in zip(lengths, infos, strict=True):
        assert info == {
            "requests": 3,
            "inputs": ["INPUT"],
            "shape": [1, n],
            "index": None,
        }
    # Triton 2.51's python backend counts the execution after sending its responses,
    # so the client can read the statistics first: wait for the count to arrive.
    wait_until(
        lambda: _stats(py_server, "ragged_py")["execution_count"] > 0,
        "the execution to be counted",
    )
    stats = _stats(py_server, "ragged_py")
    assert stats["execution_count"] == 1
    assert stats["inference_count"] == 3


# -- pytorch: the batch input is a forward argument after the inputs ----------------

TORCH_CONFIG = """
name: "ragged_torch"
backend: "pytorch"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]
batch_input [ { kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO target_name: "OFFSETS"
                data_type: TYPE_INT32 source_input: "X" } ]
output [ { name: "SUM" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 2000000 }
"""


def test_pytorch_ragged_sums(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import torchmodels

    repo = tmp_path / "repo"
    torchmodels.script(repo, "ragged_torch", torchmodels.RaggedSum(), TORCH_CONFIG)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(repo / "ragged_torch" / "1" / "model.pt"))
    inputs = [np.full((1, n), float(n), np.float32) for n in (1, 2, 3, 4)]
    with run_server(repo) as running:
        results = _concurrently(
            [lambda x=x: _infer(running, "ragged_torch", x) for x in inputs]
        )
        stats = _stats(running, "ragged_torch")
    for x, result in zip(inputs, results, strict=True):
        n = x.shape[1]
        alone = module(torch.from_numpy(x.reshape(-1)), torch.tensor([0, n]))
        np.testing.assert_array_equal(result["SUM"], alone.numpy())
    assert stats["execution_count"] < stats["inference_count"] == len(inputs)
