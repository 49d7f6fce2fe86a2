"""tritonx.api: the in-process server API (Triton's ``tritonserver`` package shape)
on real models written here: python add_sub, a BYTES echo, a decoupled model that
streams N responses, an ONNX Add, and a model that leaves a file in finalize."""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from testmodels import ADD_SUB, ADD_SUB_PY, REPEAT_CONFIG, REPEAT_MODEL

import tritonx.api as api

BYTES_CONFIG = """
name: "echo_bytes"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1 ] } ]
"""
BYTES_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            values = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            upper = np.array([v.decode().upper().encode() for v in values], dtype=np.object_)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", upper)]))
        return out
"""
ONNX_CONFIG = """
name: "onnx_add"
backend: "onnxruntime"
max_batch_size: 0
input [ { name: "A" data_type: TYPE_FP32 dims: [ -1 ] },
        { name: "B" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "SUM" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""
FINALIZE_CONFIG = """
name: "finalizer"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""
FINALIZE_MODEL = """
import os
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]

    def finalize(self):
        open(os.path.join(self.dir, "finalized"), "w").close()
"""


def _write(repo: Path, name: str, config: str, model_py: str | None = None) -> None:
    (repo / name / "1").mkdir(parents=True, exist_ok=True)
    (repo / name / "config.pbtxt").write_text(textwrap.dedent(config))
    if model_py is not None:
        (repo / name / "1" / "model.py").write_text(textwrap.dedent(model_py))


def _write_onnx(repo: Path) -> None:
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Add", ["A", "B"], ["SUM"])],
        "add",
        [
            helper.make_tensor_value_info("A", f32, [None]),
            helper.make_tensor_value_info("B", f32, [None]),
        ],
        [helper.make_tensor_value_info("SUM", f32, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    _write(repo, "onnx_add", ONNX_CONFIG)
    (repo / "onnx_add" / "1" / "model.onnx").write_bytes(model.SerializeToString())


def _repo(root: Path) -> Path:
    repo = root / "repo"
    _write(repo, "add_sub", ADD_SUB, ADD_SUB_PY)
    _write(repo, "echo_bytes", BYTES_CONFIG, BYTES_MODEL)
    _write(repo, "repeat", REPEAT_CONFIG, REPEAT_MODEL)
    _write_onnx(repo)
    return repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _repo(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[api.Server]:
    server = api.Server(model_repository=str(repo)).start(wait_until_ready=True)
    yield server
    server.stop()


def _add_sub_inputs() -> dict[str, np.ndarray]:
    return {
        "INPUT0": np.array([1, 2, 3, 4], dtype=np.float32),
        "INPUT1": np.array([0.5, 0.5, 2, 2], dtype=np.float32),
    }


# -- server ---------------------------------------------------------------------------


def test_server_state_and_models(server: api.Server) -> None:
    assert server.live() and server.ready()
    meta = server.metadata()
    assert meta["name"] == "triton" and "statistics" in meta["extensions"]
    models = server.models()
    assert set(models) == {
        ("add_sub", 1),
        ("echo_bytes", 1),
        ("onnx_add", 1),
        ("repeat", 1),
    }
    assert models[("add_sub", 1)].state == "READY"
    assert models["add_sub"].version == -1
    with pytest.raises(KeyError):
        models["nope"]
    model = server.model("add_sub")
    assert model.ready()
    assert not server.model("nope").ready()
    meta = model.metadata()
    assert meta["versions"] == ["1"] and meta["platform"] == "python"
    assert [i["name"] for i in meta["inputs"]] == ["INPUT0", "INPUT1"]
    assert model.config()["backend"] == "python"


def test_not_started_and_bad_options(tmp_path: Path) -> None:
    server = api.Server()
    with pytest.raises(api.InvalidArgumentError):
        server.ready()
    with pytest.raises(api.InvalidArgumentError):
        server.model("x")
    with pytest.raises(api.InvalidArgumentError):
        server.stop()
    # As Triton's python/test/test_api.py expects.
    with pytest.raises(api.InternalError):
        api.Server(model_repository=str(tmp_path / "foo")).start()
    with pytest.raises(api.InvalidArgumentError):
        api.Server(model_repository=None).start()
    with pytest.raises(TypeError):
        api.Server(server_id=1, model_repository=str(tmp_path)).start()
    with pytest.raises(TypeError):
        api.Server(model_repository=1).start()


def test_failed_initialization_without_exit_on_error(tmp_path: Path) -> None:
    """Triton's server that failed to initialise (exit_on_error off): it runs,
    neither live nor ready, and refuses model queries."""
    missing = str(tmp_path / "foo")
    server = api.Server(model_repository=missing, exit_on_error=False).start()
    try:
        assert not server.live() and not server.ready()
        assert server.metadata()["name"] == "triton"
        with pytest.raises(api.UnavailableError, match="Server not ready"):
            server.models()
    finally:
        server.stop()


# -- inference --------------------------------------------------------------------------


def test_infer_add_sub(server: api.Server) -> None:
    inputs = _add_sub_inputs()
    responses = list(server.model("add_sub").infer(inputs=inputs, request_id="r1"))
    assert len(responses) == 1
    response = responses[0]
    assert response.final and response.error is None
    assert response.request_id == "r1"
    out0 = np.from_dlpack(response.outputs["OUTPUT0"])
    out1 = response.outputs["OUTPUT1"].to_host()
    np.testing.assert_array_equal(out0, inputs["INPUT0"] + inputs["INPUT1"])
    np.testing.assert_array_equal(
        np.from_dlpack(out1), inputs["INPUT0"] - inputs["INPUT1"]
    )
    assert out1.data_type == api.DataType.FP32 and out1.shape == (4,)
    assert out1.memory_type == api.MemoryType.CPU
    stats = server.model("add_sub").statistics()["model_stats"][0]
    assert stats["name"] == "add_sub" and stats["inference_count"] >= 1


def test_infer_with_request_object_and_tensors(server: api.Server) -> None:
    model = server.model("add_sub", 1)
    tensors = {k: api.Tensor.from_dlpack(v) for k, v in _add_sub_inputs().items()}
    request = model.create_request(inputs=tensors, output_names=["OUTPUT1"])
    (response,) = model.infer(request)
    assert list(response.outputs) == ["OUTPUT1"]
    np.testing.assert_array_equal(
        np.from_dlpack(response.outputs["OUTPUT1"]), [0.5, 1.5, 1, 2]
    )


def test_infer_onnx(server: api.Server) -> None:
    a = np.arange(5, dtype=np.float32)
    (response,) = server.model("onnx_add").infer(inputs={"A": a, "B": a * 10})
    np.testing.assert_array_equal(np.from_dlpack(response.outputs["SUM"]), a * 11)


def test_bytes_in_and_out(server: api.Server) -> None:
    model = server.model("echo_bytes")
    (response,) = model.infer(inputs={"INPUT0": ["abc", "Zürich"]})
    out = response.outputs["OUTPUT0"]
    assert out.data_type == api.DataType.BYTES
    assert out.to_string_array().tolist() == ["ABC", "ZÜRICH"]
    tensor = api.Tensor.from_string_array(["x", "yz"])
    (response,) = model.infer(inputs={"INPUT0": tensor})
    assert response.outputs["OUTPUT0"].to_bytes_array().tolist() == [b"X", b"YZ"]
    with pytest.raises(api.InvalidArgumentError):
        np.from_dlpack(response.outputs["OUTPUT0"])


def _repeat_inputs(count: int) -> dict[str, np.ndarray]:
    return {
        "COUNT": np.array([count], dtype=np.int32),
        "MODE": np.array([0], dtype=np.int32),
    }


def test_decoupled_streaming(server: api.Server) -> None:
    responses = list(server.model("repeat").infer(inputs=_repeat_inputs(5)))
    values = [int(np.from_dlpack(r.outputs["OUT"])[0]) for r in responses if r.outputs]
    assert values == [0, 1, 2, 3, 4]
    assert [r.final for r in responses] == [False] * (len(responses) - 1) + [True]


def test_async_infer(server: api.Server) -> None:
    async def main() -> tuple[list[int], np.ndarray]:
        values = []
        async for r in server.model("repeat").async_infer(inputs=_repeat_inputs(3)):
            if r.outputs:
                values.append(int(np.from_dlpack(r.outputs["OUT"])[0]))
        results = [
            r
            async for r in server.model("add_sub").async_infer(inputs=_add_sub_inputs())
        ]
        return values, np.from_dlpack(results[0].outputs["OUTPUT0"])

    values, out0 = asyncio.run(main())
    assert values == [0, 1, 2]
    np.testing.assert_array_equal(out0, [1.5, 2.5, 5, 6])


def test_next_ready_takes_only_what_has_arrived(server: api.Server) -> None:
    """AsyncResponseIterator.next_ready (tritonx addition) never waits: None until
    a response is there, then the responses in order, then None after the final."""

    async def main() -> tuple[list[int], list[bool]]:
        responses = server.model("repeat").async_infer(inputs=_repeat_inputs(4))
        taken: list[api.InferenceResponse] = []
        for _ in range(12000):  # a minute at most
            response = responses.next_ready()
            if response is None:
                await asyncio.sleep(0.005)
                continue
            taken.append(response)
            if response.final:
                break
        assert responses.next_ready() is None
        values = [int(np.from_dlpack(r.outputs["OUT"])[0]) for r in taken if r.outputs]
        return values, [r.final for r in taken]

    values, finals = asyncio.run(main())
    assert values == [0, 1, 2, 3]
    assert finals == [False] * (len(finals) - 1) + [True]


def test_response_queue(server: api.Server) -> None:
    """Every response also lands in the request's response_queue (Triton's)."""
    import queue

    received: queue.SimpleQueue = queue.SimpleQueue()
    model = server.model("repeat")
    responses = list(model.infer(inputs=_repeat_inputs(3), response_queue=received))
    mirrored = [received.get_nowait() for _ in range(received.qsize())]
    assert [r.final for r in mirrored] == [r.final for r in responses]
    assert mirrored[-1].final and received.empty()

    async def main() -> list[bool]:
        waiting: asyncio.Queue = asyncio.Queue()
        async for _ in model.async_infer(
            inputs=_repeat_inputs(2), response_queue=waiting
        ):
            pass
        return [waiting.get_nowait().final for _ in range(waiting.qsize())]

    assert asyncio.run(main())[-1] is True
    with pytest.raises(api.InvalidArgumentError, match=r"queue\.SimpleQueue"):
        model.infer(inputs=_repeat_inputs(1), response_queue=asyncio.Queue())


def test_concurrent_infer_from_threads(server: api.Server) -> None:
    model = server.model("add_sub")
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(10):
                a = np.full(4, seed * 100 + i, dtype=np.float32)
                b = np.arange(4, dtype=np.float32)
                (r,) = model.infer(inputs={"INPUT0": a, "INPUT1": b})
                np.testing.assert_array_equal(
                    np.from_dlpack(r.outputs["OUTPUT0"]), a + b
                )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- errors -----------------------------------------------------------------------------


def test_errors(server: api.Server) -> None:
    with pytest.raises(api.NotFoundError, match="unknown model"):
        server.model("nope").infer(inputs={})
    with pytest.raises(api.InvalidArgumentError):
        server.model("add_sub").infer(inputs=_add_sub_inputs(), parameters={"p": None})
    with pytest.raises(api.UnavailableError):  # NONE mode: no model control
        server.load("add_sub")


def _api_error(server: api.Server, inputs: dict[str, np.ndarray]) -> str:
    with pytest.raises(api.InvalidArgumentError) as info:
        server.model("add_sub").infer(inputs=inputs)
    return str(info.value)


def test_error_messages_match_http(server: api.Server, repo: Path) -> None:
    """Bad input name and shape: the same class and message as the HTTP frontend."""
    import tritonclient.http as httpclient
    from serverutil import run_server
    from tritonclient.utils import InferenceServerException

    good = _add_sub_inputs()
    cases = [
        {"INPUT0": good["INPUT0"], "WRONG": good["INPUT1"]},
        {"INPUT0": good["INPUT0"], "INPUT1": np.ones(3, dtype=np.float32)},
    ]
    with run_server(repo, "--allow-grpc=false", "--allow-metrics=false") as running:
        client = httpclient.InferenceServerClient(running.http_url)
        for inputs in cases:
            wire = []
            for name, value in inputs.items():
                tensor = httpclient.InferInput(name, list(value.shape), "FP32")
                tensor.set_data_from_numpy(value)
                wire.append(tensor)
            with pytest.raises(InferenceServerException) as http_error:
                client.infer("add_sub", wire)
            assert http_error.value.status() == "400"
            assert _api_error(server, inputs) == http_error.value.message()
        client.close()


# -- model control and lifecycle -----------------------------------------------------------


def test_explicit_load_unload_and_finalize(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _write(repo, "add_sub", ADD_SUB, ADD_SUB_PY)
    _write(repo, "finalizer", FINALIZE_CONFIG, FINALIZE_MODEL)
    server = api.Server(
        api.Options(
            model_repository=[str(repo)],
            model_control_mode=api.ModelControlMode.EXPLICIT,
            startup_models=["finalizer"],
        )
    ).start(wait_until_ready=True)
    try:
        assert server.models()[("finalizer", 1)].state == "READY"
        assert ("add_sub", -1) in server.models()
        with pytest.raises(api.NotFoundError):
            server.model("add_sub").infer(inputs=_add_sub_inputs())
        model = server.load("add_sub")
        assert model.ready()
        (r,) = model.infer(inputs=_add_sub_inputs())
        assert r.outputs["OUTPUT0"].shape == (4,)
        # A config override, as Triton's load parameters give it.
        override = {
            "backend": "python",
            "max_batch_size": 8,
            "input": [
                {"name": n, "data_type": "TYPE_FP32", "dims": [4]}
                for n in ("INPUT0", "INPUT1")
            ],
            "output": [
                {"name": n, "data_type": "TYPE_FP32", "dims": [4]}
                for n in ("OUTPUT0", "OUTPUT1")
            ],
        }
        server.load("add_sub", {"config": json.dumps(override)})
        assert server.model("add_sub").config()["max_batch_size"] == 8
        batch = {k: np.stack([v, v]) for k, v in _add_sub_inputs().items()}
        (r,) = server.model("add_sub").infer(inputs=batch)
        assert r.outputs["OUTPUT0"].shape == (2, 4)
        # A model from files given with the load ("file:<version>/<name>").
        files_config = json.dumps({**override, "max_batch_size": 0})
        loaded = server.load(
            "from_files",
            {"config": files_config, "file:1/model.py": ADD_SUB_PY.encode()},
        )
        (r,) = loaded.infer(inputs=_add_sub_inputs())
        np.testing.assert_array_equal(
            np.from_dlpack(r.outputs["OUTPUT1"]), [0.5, 1.5, 1, 2]
        )
        server.unload("add_sub", wait_until_unloaded=True)
        assert not server.model("add_sub").ready()
        assert server.models()[("add_sub", 1)].state == "UNAVAILABLE"
        # Without waiting: no longer served once the call returns (as Triton's),
        # though its finalize may still be running.
        server.unload("from_files")
        assert not server.model("from_files").ready()
        assert not (repo / "finalizer" / "finalized").exists()
    finally:
        server.stop()
    assert (
        repo / "finalizer" / "finalized"
    ).exists()  # stop() unloaded it: finalize ran
    with pytest.raises(api.InvalidArgumentError):
        server.ready()
    # A stopped server can start again.
    server.start(wait_until_ready=True)
    assert server.model("finalizer").ready()
    server.stop()
