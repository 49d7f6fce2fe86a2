"""ONNX models whose graphs use custom operators: the config's
``model_operations { op_library_filename: ... }`` registers the library with each
session (Triton's onnxruntime backend), here onnxruntime-extensions' real library
and its ``ai.onnx.contrib`` StringUpper operator, through the wire."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from serverutil import client_inputs, load_over_http, run_server

extensions = pytest.importorskip("onnxruntime_extensions")

CONFIG = """
name: "%s"
backend: "onnxruntime"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "UPPER" data_type: TYPE_STRING dims: [ -1 ] } ]
%s
"""


def upper_model(repo: Path, name: str, operations: str) -> None:
    node = helper.make_node(
        "StringUpper", ["TEXT"], ["UPPER"], domain="ai.onnx.contrib"
    )
    graph = helper.make_graph(
        [node],
        "upper",
        [helper.make_tensor_value_info("TEXT", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("UPPER", TensorProto.STRING, [None])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", 17),
            helper.make_opsetid("ai.onnx.contrib", 1),
        ],
    )
    model.ir_version = 8
    (repo / name / "1").mkdir(parents=True)
    onnx.save(model, str(repo / name / "1" / "model.onnx"))
    (repo / name / "config.pbtxt").write_text(CONFIG % (name, operations))


def test_custom_operator_library_from_the_config(tmp_path: Path) -> None:
    library = extensions.get_library_path()
    repo = tmp_path / "models"
    upper_model(
        repo, "upper", f'model_operations {{ op_library_filename: "{library}" }}'
    )
    upper_model(repo, "unregistered", "")
    upper_model(
        repo,
        "missing_library",
        'model_operations { op_library_filename: "/nonexistent/libops.so" }',
    )
    text = np.array([b"hello", b"Triton"], dtype=object)
    with run_server(repo, "--model-control-mode=explicit") as server:
        assert load_over_http(server, "upper") == (200, None)
        for module, url in (
            (httpclient, server.http_url),
            (grpcclient, server.grpc_url),
        ):
            client = module.InferenceServerClient(url)
            result = client.infer("upper", client_inputs(module, {"TEXT": text}))
            assert result.as_numpy("UPPER").tolist() == [b"HELLO", b"TRITON"]
            client.close()
        # Without the library the graph's operator is unknown to onnxruntime.
        code, error = load_over_http(server, "unregistered")
        assert code == 400
        assert error is not None and "StringUpper" in error, error
        # A library that cannot be loaded: Triton's onnxruntime backend wording.
        code, error = load_over_http(server, "missing_library")
        assert code == 400
        assert error is not None and error.startswith(
            "load failed for model 'missing_library': version 1 is at UNAVAILABLE "
            "state: Internal: onnx runtime error 1: Failed to load library "
            "/nonexistent/libops.so"
        ), error
