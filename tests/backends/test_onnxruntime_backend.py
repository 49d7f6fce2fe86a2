"""The onnxruntime backend against numpy references, with models built in the test."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritonx.backends.base import InstanceContext
from tritonx.backends.ort_options import build_settings, providers_for
from tritonx.config import parse_config_text
from tritonx.errors import InvalidArgumentError


def _save(model_dir: Path, graph: onnx.GraphProto, config: str = "") -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (model_dir / "1").mkdir(parents=True)
    onnx.save(model, str(model_dir / "1" / "model.onnx"))
    (model_dir / "config.pbtxt").write_text(textwrap.dedent(config))
    return model_dir


def _add_sub(model_dir: Path, config: str) -> Path:
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "add_sub",
        [
            helper.make_tensor_value_info(n, f32, [None, 4])
            for n in ("INPUT0", "INPUT1")
        ],
        [
            helper.make_tensor_value_info(n, f32, [None, 4])
            for n in ("OUTPUT0", "OUTPUT1")
        ],
    )
    return _save(model_dir, graph, config)


def test_add_sub_autocompleted(tmp_path: Path, serve, infer) -> None:
    # No inputs/outputs in the config: they come from the graph.
    model_dir = _add_sub(tmp_path / "add_sub", 'backend: "onnxruntime"\n')
    a = np.random.rand(3, 4).astype(np.float32)
    b = np.random.rand(3, 4).astype(np.float32)
    with serve(model_dir) as core:
        assert core.max_batch_size == 4
        out = infer(core, {"INPUT0": a, "INPUT1": b})
        np.testing.assert_allclose(out["OUTPUT0"], a + b)
        np.testing.assert_allclose(out["OUTPUT1"], a - b)
        only = infer(core, {"INPUT0": a, "INPUT1": b}, outputs=["OUTPUT1"])
        assert list(only) == ["OUTPUT1"]


def test_dynamic_batching_slices_per_request(
    tmp_path: Path, serve, make_request
) -> None:
    config = """
    backend: "onnxruntime"
    max_batch_size: 64
    dynamic_batching { max_queue_delay_microseconds: 20000 }
    """
    model_dir = _add_sub(tmp_path / "add_sub_b", config)
    rng = np.random.default_rng(0)
    pairs = [
        (rng.random((n, 4), np.float32), rng.random((n, 4), np.float32))
        for n in (1, 2, 3, 1, 5, 2, 1, 4)
    ]
    results: dict[int, dict[str, np.ndarray]] = {}
    with serve(model_dir) as core:

        def run(i: int) -> None:
            a, b = pairs[i]
            resp = core.infer(make_request({"INPUT0": a, "INPUT1": b}))
            results[i] = {t.name: t.as_numpy().copy() for t in resp.outputs}

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pairs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = core.statistics()
    for i, (a, b) in enumerate(pairs):
        np.testing.assert_allclose(results[i]["OUTPUT0"], a + b)
        np.testing.assert_allclose(results[i]["OUTPUT1"], a - b)
    assert stats["inference_count"] == sum(a.shape[0] for a, _ in pairs)
    assert stats["execution_count"] < len(pairs)  # some requests were batched


def test_mlp_matches_numpy(tmp_path: Path, serve, infer) -> None:
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((16, 32)).astype(np.float32)
    b1 = rng.standard_normal(32).astype(np.float32)
    w2 = rng.standard_normal((32, 5)).astype(np.float32)
    b2 = rng.standard_normal(5).astype(np.float32)
    inits = [
        numpy_helper.from_array(v, n)
        for v, n in ((w1, "W1"), (b1, "B1"), (w2, "W2"), (b2, "B2"))
    ]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W1"], ["h0"]),
            helper.make_node("Add", ["h0", "B1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "W2"], ["h3"]),
            helper.make_node("Add", ["h3", "B2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 5]),
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 5]),
        ],
        initializer=inits,
    )
    config = """
    backend: "onnxruntime"
    max_batch_size: 8
    input [ { name: "x" data_type: TYPE_FP32 dims: [ 16 ] } ]
    output [ { name: "logits" data_type: TYPE_FP32 dims: [ 5 ] },
             { name: "probs" data_type: TYPE_FP32 dims: [ 5 ] } ]
    instance_group [ { count: 2 kind: KIND_CPU } ]
    optimization { graph { level: 1 } }
    parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
    """
    model_dir = _save(tmp_path / "mlp", graph, config)
    x = rng.standard_normal((6, 16)).astype(np.float32)
    logits = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    with serve(model_dir) as core:
        for _ in range(3):
            out = infer(core, {"x": x})
            np.testing.assert_allclose(out["logits"], logits, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(out["probs"], probs, rtol=1e-4, atol=1e-5)


def test_bytes_identity(tmp_path: Path, serve, infer) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["IN"], ["OUT"])],
        "strings",
        [helper.make_tensor_value_info("IN", TensorProto.STRING, [None, None])],
        [helper.make_tensor_value_info("OUT", TensorProto.STRING, [None, None])],
    )
    config = """
    backend: "onnxruntime"
    max_batch_size: 4
    input [ { name: "IN" data_type: TYPE_STRING dims: [ -1 ] } ]
    output [ { name: "OUT" data_type: TYPE_STRING dims: [ -1 ] } ]
    """
    model_dir = _save(tmp_path / "strings", graph, config)
    data = np.array([["ab", "", "h\u00e9"], ["x", "yz", "w"]], dtype=object)
    wire = np.vectorize(lambda s: s.encode(), otypes=[object])(data)
    with serve(model_dir) as core:
        out = infer(core, {"IN": wire})
    assert out["OUT"].tolist() == wire.tolist()


def test_variable_dims(tmp_path: Path, serve, infer) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["X"], ["S"], keepdims=0, axes=None),
            helper.make_node("Mul", ["X", "X"], ["SQ"]),
        ],
        "var",
        [helper.make_tensor_value_info("X", TensorProto.INT64, [None, None])],
        [
            helper.make_tensor_value_info("S", TensorProto.INT64, []),
            helper.make_tensor_value_info("SQ", TensorProto.INT64, [None, None]),
        ],
    )
    config = """
    backend: "onnxruntime"
    max_batch_size: 0
    input [ { name: "X" data_type: TYPE_INT64 dims: [ -1, -1 ] } ]
    output [ { name: "S" data_type: TYPE_INT64 dims: [ 1 ] },
             { name: "SQ" data_type: TYPE_INT64 dims: [ -1, -1 ] } ]
    """
    model_dir = _save(tmp_path / "var", graph, config)
    with serve(model_dir) as core:
        for shape in ((1, 1), (2, 7), (5, 3)):
            x = np.arange(np.prod(shape), dtype=np.int64).reshape(shape)
            out = infer(core, {"X": x}, outputs=["SQ"])
            np.testing.assert_array_equal(out["SQ"], x * x)


def test_session_settings_from_config() -> None:
    config = parse_config_text(
        """
        name: "m"
        backend: "onnxruntime"
        optimization { graph { level: -1 } }
        parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
        parameters { key: "execution_mode" value: { string_value: "1" } }
        parameters { key: "enable_mem_pattern" value: { string_value: "0" } }
        """,
        "test",
    )
    settings = build_settings(config, {"inter_op_thread_count": "3"})
    opts = settings.options
    assert opts.intra_op_num_threads == 2
    assert opts.inter_op_num_threads == 3
    assert opts.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert opts.enable_mem_pattern is False
    cpu = InstanceContext("m_0", 0, "CPU")
    assert providers_for(settings, cpu) == [("CPUExecutionProvider", {})]


def test_unknown_accelerator_is_rejected() -> None:
    config = parse_config_text(
        'name: "m" optimization { execution_accelerators {'
        ' cpu_execution_accelerator: [ { name: "magic" } ] } }',
        "test",
    )
    with pytest.raises(InvalidArgumentError, match="unknown Execution Accelerator"):
        build_settings(config, {})


def test_gpu_instance_providers_follow_the_config(caplog) -> None:
    """TensorRT then CUDA (on the instance's device and stream) for a GPU instance,
    as Triton's onnxruntime backend; a provider this onnxruntime lacks is skipped
    with one log line per model and the instance runs on the CPU."""
    config = parse_config_text(
        'name: "m" optimization { execution_accelerators {'
        ' gpu_execution_accelerator: [ { name: "tensorrt" },'
        ' { name: "cuda" parameters { key: "cudnn_conv_use_max_workspace"'
        ' value: "1" } } ] } }',
        "test",
    )
    settings = build_settings(config, {})
    available = set(ort.get_available_providers())
    gpus = [InstanceContext(f"m_0_{i}", i, "GPU", 0, 0x1000 + i) for i in range(2)]
    with caplog.at_level("WARNING", logger="tritonx.backends.onnxruntime"):
        chosen = [providers_for(settings, ictx) for ictx in gpus]
    names = [[name for name, _ in providers] for providers in chosen]
    expected = [
        p
        for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
        if p in available
    ]
    assert names == [[*expected, "CPUExecutionProvider"]] * 2
    missing = {"TensorrtExecutionProvider", "CUDAExecutionProvider"} - available
    for provider in missing:
        lines = [r for r in caplog.records if provider in r.getMessage()]
        assert len(lines) == 1, caplog.text  # once per model, not per instance
    if "CUDAExecutionProvider" in available:
        cuda = dict(chosen[1])["CUDAExecutionProvider"]
        assert cuda["device_id"] == 0
        assert cuda["user_compute_stream"] == str(0x1001)
        assert cuda["cudnn_conv_use_max_workspace"] == "1"


SEQUENCE_STATE_CONFIG = """
name: "accumulate"
backend: "onnxruntime"
max_batch_size: 0
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
sequence_batching {
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] }
  ]
  state [ { input_name: "INPUT_STATE" output_name: "OUTPUT_STATE" data_type: TYPE_INT32 dims: 1 } ]
}
"""


def test_sequence_control_and_implicit_state_inputs(tmp_path: Path) -> None:
    """Triton's QA model onnx_nobatch_sequence_int32 (L0_backend_python/bls): the
    graph takes the sequence batcher's control tensors and implicit state as inputs
    the config's input list does not name, and returns the next state as an output
    it does not name. Such a model loads, and its state carries from request to
    request (it used to fail the load: "configuration expects 1 inputs, model
    provides 4"; and then every request saw a zero state)."""
    import tritonclient.http as httpclient
    from serverutil import run_server

    i32 = TensorProto.INT32
    graph = helper.make_graph(
        [
            helper.make_node("Sub", ["ONE", "START"], ["NOT_START"]),
            helper.make_node("Mul", ["INPUT_STATE", "NOT_START"], ["KEPT"]),
            helper.make_node("Mul", ["KEPT", "READY"], ["CARRIED"]),
            helper.make_node("Add", ["INPUT", "CARRIED"], ["OUTPUT"]),
            helper.make_node("Identity", ["OUTPUT"], ["OUTPUT_STATE"]),
        ],
        "accumulate",
        [
            helper.make_tensor_value_info(n, i32, [1])
            for n in ("INPUT_STATE", "INPUT", "START", "READY")
        ],
        [
            helper.make_tensor_value_info(n, i32, [1])
            for n in ("OUTPUT", "OUTPUT_STATE")
        ],
        initializer=[numpy_helper.from_array(np.array([1], np.int32), "ONE")],
    )
    _save(tmp_path / "repo" / "accumulate", graph, SEQUENCE_STATE_CONFIG)
    with run_server(tmp_path / "repo") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        seen = []
        for value, flags in ((1000, "start"), (0, ""), (1, ""), (2, "end")):
            inp = httpclient.InferInput("INPUT", [1], "INT32")
            inp.set_data_from_numpy(np.array([value], np.int32))
            result = client.infer(
                "accumulate",
                [inp],
                sequence_id=7,
                sequence_start=flags == "start",
                sequence_end=flags == "end",
            )
            names = [o["name"] for o in result.get_response()["outputs"]]
            seen.append((int(result.as_numpy("OUTPUT")[0]), names))
    assert seen == [
        (1000, ["OUTPUT"]),
        (1000, ["OUTPUT"]),
        (1001, ["OUTPUT"]),
        (1003, ["OUTPUT"]),
    ]


SEQUENCE_WARMUP_CONFIG = """
name: "sequence_int32"
backend: "onnxruntime"
max_batch_size: 4
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
sequence_batching {
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] }
  ]
}
model_warmup [ {
  name: "sequence sample"
  batch_size: 2
  count: 2
  inputs { key: "INPUT" value: { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true } }
  inputs { key: "START" value: { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true } }
  inputs { key: "READY" value: { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true } }
} ]
"""


def test_sequence_model_warmup_names_the_control_inputs(tmp_path: Path) -> None:
    """L0_warmup's onnx_sequence_int32: a graph that takes the sequence controls
    as inputs can only run a warmup sample that names them (Triton's instruction
    for sequence models); they reach the session with the sample's inputs, so
    the model warms up (it failed the load: the session missed START and READY)
    and then serves sequences with the batcher's own controls."""
    import tritonclient.http as httpclient
    from serverutil import run_server

    i32 = TensorProto.INT32
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["INPUT", "READY"], ["READY_INPUT"]),
            helper.make_node("Mul", ["START", "THOUSAND"], ["START_MARK"]),
            helper.make_node("Add", ["READY_INPUT", "START_MARK"], ["OUTPUT"]),
        ],
        "sequence_int32",
        [
            helper.make_tensor_value_info(n, i32, [None, 1])
            for n in ("INPUT", "START", "READY")
        ],
        [helper.make_tensor_value_info("OUTPUT", i32, [None, 1])],
        initializer=[numpy_helper.from_array(np.array([1000], np.int32), "THOUSAND")],
    )
    _save(tmp_path / "repo" / "sequence_int32", graph, SEQUENCE_WARMUP_CONFIG)
    with run_server(tmp_path / "repo", "--log-verbose=1") as server:
        assert server.wait_for_log(
            "is running warmup sample 'sequence sample' for iteration 2"
        )
        client = httpclient.InferenceServerClient(server.http_url)
        stats = client.get_inference_statistics("sequence_int32")["model_stats"][0]
        # Two instances (the CPU default), each the sample twice, 2 requests a run.
        assert (stats["inference_count"], stats["execution_count"]) == (8, 4)
        seen = []
        for value, flags in ((5, "start"), (6, ""), (7, "end")):
            inp = httpclient.InferInput("INPUT", [1, 1], "INT32")
            inp.set_data_from_numpy(np.array([[value]], np.int32))
            result = client.infer(
                "sequence_int32",
                [inp],
                sequence_id=3,
                sequence_start=flags == "start",
                sequence_end=flags == "end",
            )
            seen.append(int(result.as_numpy("OUTPUT")[0, 0]))
    assert seen == [1005, 6, 7]
