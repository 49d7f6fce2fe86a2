"""An ONNX model made with onnx.helper goes through the same manager path."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from repo_helpers import Repo, make_manager, run

# Runs once the onnxruntime backend is part of the tree.
pytest.importorskip("tritonx.backends.onnxruntime_backend")


def _add_one_model() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "ONE"], ["OUTPUT0"])],
        "add_one",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, [-1, 4])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, [-1, 4])],
        [helper.make_tensor("ONE", TensorProto.FLOAT, [1], [1.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_onnx_model_with_auto_completed_config(repo: Repo) -> None:
    # No config.pbtxt: backend and tensors come from the file (auto-complete).
    vdir = repo.root / "add_one" / "1"
    vdir.mkdir(parents=True)
    (vdir / "model.onnx").write_bytes(_add_one_model())
    manager = make_manager([repo.root], mode="none")

    async def scenario() -> None:
        from tritonx import _native

        await manager.start()
        assert manager.index() == [
            {"name": "add_one", "version": "1", "state": "READY"}
        ]
        meta = manager.metadata("add_one")
        assert meta["platform"] == "onnxruntime_onnx"
        assert meta["inputs"] == [
            {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}
        ]
        data = np.arange(8, dtype=np.float32).reshape(2, 4)
        request = _native.Request(
            id="", inputs=[("INPUT0", "FP32", [2, 4], data.tobytes())]
        )
        response = manager.get("add_one").core.infer(request)
        np.testing.assert_array_equal(response.outputs[0].as_numpy(), data + 1)
        await manager.shutdown()

    run(scenario())
