"""An ONNX model made with onnx.helper goes through the same manager path."""

from __future__ import annotations

from pathlib import Path

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


def test_instance_update_in_place_over_the_wire(tmp_path: Path) -> None:
    # A reload that changes only the instance groups keeps the model (its
    # statistics carry on) and changes its onnxruntime sessions in place
    # (InstanceKeeper.remove_instance closes the retired ones); another change
    # builds it again (statistics from zero).
    import tritonclient.http as httpclient
    from serverutil import run_server

    model_dir = tmp_path / "add_one"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.onnx").write_bytes(_add_one_model())

    def configure(count: int, max_batch_size: int = 8) -> None:
        (model_dir / "config.pbtxt").write_text(
            f'backend: "onnxruntime"\nmax_batch_size: {max_batch_size}\n'
            f"instance_group [ {{ count: {count} kind: KIND_CPU }} ]\n"
        )

    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    seen = []
    configure(1)
    with (
        run_server(tmp_path, "--model-control-mode=explicit") as server,
        httpclient.InferenceServerClient(server.http_url) as client,
    ):

        def reload_and_infer(count: int, max_batch_size: int = 8) -> None:
            configure(count, max_batch_size)
            client.load_model("add_one")
            inputs = [httpclient.InferInput("INPUT0", [1, 4], "FP32")]
            inputs[0].set_data_from_numpy(data)
            result = client.infer("add_one", inputs).as_numpy("OUTPUT0")
            np.testing.assert_array_equal(result, data + 1)
            stats = client.get_inference_statistics("add_one")["model_stats"][0]
            served = client.get_model_config("add_one")["instance_group"][0]
            seen.append((served["count"], stats["inference_count"]))

        reload_and_infer(1)
        reload_and_infer(3)
        reload_and_infer(2)
        reload_and_infer(2, max_batch_size=4)
    assert seen == [(1, 1), (3, 2), (2, 3), (2, 1)]
