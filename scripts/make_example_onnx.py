"""Generate model_repository/simple_onnx/1/model.onnx with onnx.helper.

The graph computes OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1 on FP32
tensors of shape [batch, 4]. The generated file is committed; rerun this script
only when the graph changes:  python scripts/make_example_onnx.py
(It lives outside model_repository/ because every directory there is a model.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

# Opset 13 / IR 8 keep the file loadable by every onnxruntime release since 1.10.
OPSET = 13
IR_VERSION = 8


def build() -> onnx.ModelProto:
    shape: list[str | int] = ["batch", 4]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
        for name in ("INPUT0", "INPUT1")
    ]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
        for name in ("OUTPUT0", "OUTPUT1")
    ]
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"], name="add"),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"], name="sub"),
    ]
    graph = helper.make_graph(nodes, "simple_onnx", inputs, outputs)
    model = helper.make_model(
        graph,
        producer_name="tritonx-example",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def main(argv: list[str]) -> int:
    default = (
        Path(__file__).resolve().parents[1]
        / "model_repository"
        / "simple_onnx"
        / "1"
        / "model.onnx"
    )
    target = Path(argv[1]) if len(argv) > 1 else default
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build(), str(target))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
