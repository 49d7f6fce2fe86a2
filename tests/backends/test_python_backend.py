"""The python backend end to end: Triton-style model.py files through the core."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tritonx.errors import InternalError, InvalidArgumentError, NotFoundError

ADD_SUB_CONFIG = """
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""

# Written the way Triton's python_backend add_sub example is.
ADD_SUB_MODEL = """
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = model_config = json.loads(args["model_config"])
        out0 = pb_utils.get_output_config_by_name(model_config, "OUTPUT0")
        self.output0_dtype = pb_utils.triton_string_to_numpy(out0["data_type"])
        out1 = pb_utils.get_output_config_by_name(model_config, "OUTPUT1")
        self.output1_dtype = pb_utils.triton_string_to_numpy(out1["data_type"])

    def execute(self, requests):
        responses = []
        for request in requests:
            in_0 = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            in_1 = pb_utils.get_input_tensor_by_name(request, "INPUT1")
            out_0, out_1 = (in_0.as_numpy() + in_1.as_numpy(),
                            in_0.as_numpy() - in_1.as_numpy())
            out_tensor_0 = pb_utils.Tensor("OUTPUT0", out_0.astype(self.output0_dtype))
            out_tensor_1 = pb_utils.Tensor("OUTPUT1", out_1.astype(self.output1_dtype))
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[out_tensor_0, out_tensor_1]))
        return responses

    def finalize(self):
        print("Cleaning up...")
"""

SIMPLE_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""


def _model_with_execute(body: str, header: str = "") -> str:
    return (
        "import json\nimport numpy as np\n"
        "import triton_python_backend_utils as pb_utils\n"
        f"{header}\n"
        "class TritonPythonModel:\n"
        "    def execute(self, requests):\n"
        + "".join(
            f"        {line}\n" for line in textwrap.dedent(body).strip().splitlines()
        )
    )


X3 = {"IN": np.arange(3, dtype=np.float32)}


def test_add_sub(python_model, serve, infer) -> None:
    model_dir = python_model("add_sub", ADD_SUB_CONFIG, ADD_SUB_MODEL)
    a = np.random.rand(2, 4).astype(np.float32)
    b = np.random.rand(2, 4).astype(np.float32)
    with serve(model_dir) as core:
        for _ in range(4):  # both instances serve
            out = infer(core, {"INPUT0": a, "INPUT1": b})
            np.testing.assert_allclose(out["OUTPUT0"], a + b)
            np.testing.assert_allclose(out["OUTPUT1"], a - b)
        only = infer(core, {"INPUT0": a, "INPUT1": b}, outputs=["OUTPUT1"])
        assert list(only) == ["OUTPUT1"]


def test_bytes_identity(python_model, serve, infer) -> None:
    config = """
    backend: "python"
    max_batch_size: 0
    input [ { name: "IN" data_type: TYPE_STRING dims: [ -1, -1 ] } ]
    output [ { name: "OUT" data_type: TYPE_STRING dims: [ -1, -1 ] },
             { name: "INFO" data_type: TYPE_STRING dims: [ 1 ] } ]
    """
    body = """
    out = []
    for r in requests:
        t = pb_utils.get_input_tensor_by_name(r, "IN")
        a = t.as_numpy()
        info = [str(a.dtype), type(a.flat[0]).__name__, t.triton_dtype(), t.shape()]
        out.append(pb_utils.InferenceResponse([
            pb_utils.Tensor("OUT", a),
            pb_utils.Tensor("INFO", np.array([json.dumps(info)], dtype=object)),
        ]))
    return out
    """
    data = np.array([[b"ab", b""], [b"\\x00\\xff", "\u00e9".encode()]], dtype=object)
    with serve(python_model("bytes_id", config, _model_with_execute(body))) as core:
        out = infer(core, {"IN": data})
    assert out["OUT"].dtype == object
    assert out["OUT"].tolist() == data.tolist()
    assert json.loads(out["INFO"][0]) == ["object", "bytes", 13, [2, 2]]


def test_str_outputs_become_bytes(python_model, serve, infer) -> None:
    body = """
    return [pb_utils.InferenceResponse([pb_utils.Tensor(
        "OUT", np.array(["h\u00e9", "x"], dtype=object))]) for r in requests]
    """
    config = SIMPLE_CONFIG.replace(
        'name: "OUT" data_type: TYPE_FP32', 'name: "OUT" data_type: TYPE_STRING'
    )
    with serve(python_model("str_out", config, _model_with_execute(body))) as core:
        out = infer(core, X3)
    assert out["OUT"].tolist() == ["h\u00e9".encode(), b"x"]


def test_initialize_args(python_model, serve, infer, tmp_path: Path) -> None:
    dump = tmp_path / "args"
    model = f"""
import json
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        with open({str(dump)!r} + "_" + args["model_instance_name"], "w") as f:
            json.dump(args, f)

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.zeros(1, np.float32))])
                for r in requests]
"""
    config = SIMPLE_CONFIG + "instance_group [ { count: 2 kind: KIND_CPU } ]\n"
    model_dir = python_model("argsmodel", config, model)
    with serve(model_dir):
        pass
    args = json.loads((tmp_path / "args_argsmodel_0_1").read_text())
    assert set(args) == {
        "model_config", "model_instance_kind", "model_instance_name",
        "model_instance_device_id", "model_repository", "model_version", "model_name",
        "tritonx_cuda_stream",
    }  # fmt: skip
    assert args["tritonx_cuda_stream"] == "0"  # a CPU instance has no stream
    assert args["model_instance_kind"] == "CPU"
    assert args["model_instance_name"] == "argsmodel_0_1"
    assert args["model_instance_device_id"] == "0"
    assert args["model_repository"] == str(model_dir)
    assert args["model_version"] == "1"
    assert args["model_name"] == "argsmodel"
    config_dict = json.loads(args["model_config"])
    assert config_dict["name"] == "argsmodel"
    assert config_dict["input"][0]["data_type"] == "TYPE_FP32"


def test_model_that_raises_fails_the_batch_and_keeps_serving(
    python_model, serve, infer
) -> None:
    body = """
    x = pb_utils.get_input_tensor_by_name(requests[0], "IN").as_numpy()
    if x[0] < 0:
        raise ValueError("boom here")
    return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x * 2)])]
    """
    model_dir = python_model("raises", SIMPLE_CONFIG, _model_with_execute(body))
    model_file = model_dir / "1" / "model.py"
    with serve(model_dir) as core:
        with pytest.raises(InternalError) as info:
            infer(core, {"IN": -np.ones(2, np.float32)})
        assert str(info.value) == (
            "Failed to process the request(s) for model 'raises_0', message: "
            f"ValueError: boom here\n\nAt:\n  {model_file}(9): execute\n"
        )
        out = infer(core, X3)
        np.testing.assert_array_equal(out["OUT"], X3["IN"] * 2)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "return []",
            "Number of InferenceResponse objects do not match the number of "
            "InferenceRequest objects. InferenceRequest(s) size is:1, and "
            "InferenceResponse(s) size is:0\n",
        ),
        (
            "return None",
            "Expected a list in the execute return, found type '<class 'NoneType'>'.",
        ),
        (
            "return pb_utils.InferenceResponse([])",
            "Expected a list in the execute return, found type "
            "'<class 'c_python_backend_utils.InferenceResponse'>'.",  # as Triton's
        ),
        (
            # (Triton 2.51 never answers such a request: no sender answers it.)
            "return [None for r in requests]",
            "Expected an 'InferenceResponse' object in the execute function return "
            "list, found type '<class 'NoneType'>'.",
        ),
        (
            "return ['junk' for r in requests]",
            "Expected an 'InferenceResponse' object in the execute function return "
            "list, found type '<class 'str'>'.",
        ),
        (
            'raise pb_utils.TritonModelException("tme boom")',
            "TritonModelException: tme boom\n\nAt:\n  {file}(7): execute\n",
        ),
    ],
)
def test_bad_execute_results(
    python_model, serve, infer, body: str, message: str
) -> None:
    model_dir = python_model("bad", SIMPLE_CONFIG, _model_with_execute(body))
    with serve(model_dir) as core, pytest.raises(InternalError) as info:
        infer(core, X3)
    expected = message.replace("{file}", str(model_dir / "1" / "model.py"))
    assert str(info.value) == (
        f"Failed to process the request(s) for model 'bad_0', message: {expected}"
    )


def test_bad_tensor_in_response(python_model, serve, infer) -> None:
    body = 'return [pb_utils.InferenceResponse(output_tensors=["x"]) for r in requests]'
    model_dir = python_model("bad_tensor", SIMPLE_CONFIG, _model_with_execute(body))
    with serve(model_dir) as core, pytest.raises(InternalError) as info:
        infer(core, X3)
    assert str(info.value).startswith(
        "Failed to process the request(s) for model 'bad_tensor_0', message: "
        "TypeError: __init__(): incompatible constructor arguments. The following "
        "argument types are supported:"
    )


def test_triton_error_response(python_model, serve, infer) -> None:
    body = """
    out = []
    for r in requests:
        x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
        if x[0] == 0:
            err = pb_utils.TritonError("bad input here", pb_utils.TritonError.INVALID_ARG)
        elif x[0] == 1:
            err = pb_utils.TritonError("no such thing", pb_utils.TritonError.NOT_FOUND)
        else:
            err = pb_utils.TritonError("default code")
        out.append(pb_utils.InferenceResponse(error=err))
    return out
    """
    model_dir = python_model("terr", SIMPLE_CONFIG, _model_with_execute(body))
    with serve(model_dir) as core:
        with pytest.raises(InvalidArgumentError, match=r"^bad input here$"):
            infer(core, {"IN": np.zeros(1, np.float32)})
        with pytest.raises(NotFoundError, match=r"^no such thing$"):
            infer(core, {"IN": np.ones(1, np.float32)})
        with pytest.raises(InternalError, match=r"^default code$"):
            infer(core, {"IN": np.full(1, 5, np.float32)})


def test_request_accessors_and_sender(python_model, serve, infer) -> None:
    config = SIMPLE_CONFIG.replace(
        'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]',
        'output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] },'
        ' { name: "OUT2" data_type: TYPE_FP32 dims: [ 1 ] } ]',
    )
    body = """
    for r in requests:
        info = [sorted(r.requested_output_names()), type(r.requested_output_names()).__name__,
                r.request_id(), r.correlation_id(), r.flags(), r.timeout(),
                json.loads(r.parameters()), r.is_cancelled()]
        sender = r.get_response_sender()
        sender.send(pb_utils.InferenceResponse(
            [pb_utils.Tensor("OUT", np.array([json.dumps(info)], dtype=object)),
             pb_utils.Tensor("OUT2", np.zeros(1, np.float32))]),
            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    return None
    """
    model_dir = python_model("acc", config, _model_with_execute(body))
    with serve(model_dir) as core:
        out = infer(core, X3, parameters={"p": "v", "n": 3}, request_id="rid7")
        info = json.loads(out["OUT"][0])
        assert info == [
            ["OUT", "OUT2"],
            "set",
            "rid7",
            0,
            0,
            0,
            {"p": "v", "n": 3},
            False,
        ]
        out = infer(
            core,
            X3,
            outputs=["OUT"],
            parameters={"sequence_id": 5, "sequence_start": True, "timeout": 1000},
        )
        info = json.loads(out["OUT"][0])
        assert info[0] == ["OUT"]
        assert info[3:7] == [5, 1, 1000, {}]


def test_finalize_called_on_unload(python_model, serve, tmp_path: Path) -> None:
    marker = tmp_path / "finalized"
    model = _model_with_execute("return []") + (
        f"    def finalize(self):\n        open({str(marker)!r}, 'a').write('x')\n"
    )
    config = SIMPLE_CONFIG + "instance_group [ { count: 2 kind: KIND_CPU } ]\n"
    with serve(python_model("fin", config, model)):
        assert not marker.exists()
    assert marker.read_text() == "xx"


def test_initialize_error_fails_the_load(python_model, serve) -> None:
    model = (
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        raise RuntimeError('init went wrong')\n"
    )
    model_dir = python_model("init_raises", SIMPLE_CONFIG, model)
    with pytest.raises(InternalError) as info, serve(model_dir):
        pass
    assert str(info.value) == (
        "RuntimeError: init went wrong\n\nAt:\n"
        f"  {model_dir / '1' / 'model.py'}(3): initialize\n"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "X = 1\n",
            "AttributeError: module '1.model' has no attribute 'TritonPythonModel'",
        ),
        ("def (:\n", "SyntaxError: invalid syntax (model.py, line 1)"),
    ],
)
def test_broken_model_file(python_model, serve, source: str, message: str) -> None:
    with (
        pytest.raises(InternalError) as info,
        serve(python_model("broken", SIMPLE_CONFIG, source)),
    ):
        pass
    assert str(info.value) == message


def test_two_models_named_model_py_do_not_clash(python_model, serve, infer) -> None:
    helper = "FACTOR = {}\n"
    body = """
    return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT",
        pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * helper.FACTOR)])
        for r in requests]
    """
    dirs = []
    for name, factor in (("m_two", 2), ("m_three", 3)):
        d = python_model(
            name, SIMPLE_CONFIG, _model_with_execute(body, "import helper")
        )
        (d / "1" / "helper.py").write_text(helper.format(factor))
        dirs.append(d)
    with serve(dirs[0]) as two, serve(dirs[1]) as three:
        np.testing.assert_array_equal(infer(two, X3)["OUT"], X3["IN"] * 2)
        np.testing.assert_array_equal(infer(three, X3)["OUT"], X3["IN"] * 3)


def test_async_execute(python_model, serve, infer) -> None:
    model = """
import asyncio
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    async def execute(self, requests):
        await asyncio.sleep(0)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT",
            pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() + 1)]) for r in requests]
"""
    with serve(python_model("asyncm", SIMPLE_CONFIG, model)) as core:
        np.testing.assert_array_equal(infer(core, X3)["OUT"], X3["IN"] + 1)


def test_auto_complete_config(python_model, serve, infer) -> None:
    model = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        c = auto_complete_model_config
        c.set_max_batch_size(4)
        c.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [3]})
        c.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [3]})
        c.set_dynamic_batching()
        return c

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT",
            pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 10)]) for r in requests]
"""
    model_dir = python_model("autoc", 'backend: "python"\n', model)
    with serve(model_dir) as core:
        assert core.max_batch_size == 4
        x = np.ones((2, 3), np.float32)
        np.testing.assert_array_equal(infer(core, {"IN": x})["OUT"], x * 10)


def test_bls_exec_calls_another_model(python_model, serve, infer) -> None:
    from tritonx import _native

    body = """
    out = []
    for r in requests:
        x = pb_utils.get_input_tensor_by_name(r, "IN")
        sub = pb_utils.InferenceRequest(
            model_name="doubler", requested_output_names=["OUT"], inputs=[x])
        resp = sub.exec()
        if resp.has_error():
            raise pb_utils.TritonModelException(resp.error().message())
        y = pb_utils.get_output_tensor_by_name(resp, "OUT").as_numpy()
        missing = pb_utils.InferenceRequest(model_name="nope", inputs=[x],
                                            requested_output_names=["OUT"]).exec()
        assert missing.has_error()
        out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", y + 1)]))
    return out
    """
    doubler = """
    return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT",
        pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 2)]) for r in requests]
    """
    # The BLS model finds "doubler" through the server context both joined.
    context = _native.ServerContext()
    d1 = python_model("doubler", SIMPLE_CONFIG, _model_with_execute(doubler))
    d2 = python_model("bls", SIMPLE_CONFIG, _model_with_execute(body))
    with serve(d1, context=context), serve(d2, context=context) as core_bls:
        np.testing.assert_array_equal(infer(core_bls, X3)["OUT"], X3["IN"] * 2 + 1)


def test_run_python_auto_complete_on_a_dict(tmp_path: Path) -> None:
    from tritonx.backends.python_backend import run_python_auto_complete

    plain = tmp_path / "plain.py"
    plain.write_text("class TritonPythonModel:\n    pass\n")
    config = {"name": "m", "max_batch_size": 0, "input": [], "output": []}
    assert run_python_auto_complete(plain, config) is config

    filled = tmp_path / "filled.py"
    filled.write_text(
        "class TritonPythonModel:\n"
        "    @staticmethod\n"
        "    def auto_complete_config(c):\n"
        "        c.add_output({'name': 'O', 'data_type': 'TYPE_INT32', 'dims': [2]})\n"
        "        c.set_model_transaction_policy({'decoupled': False})\n"
        "        return c\n"
    )
    out = run_python_auto_complete(filled, config)
    assert out["output"] == [{"name": "O", "data_type": "TYPE_INT32", "dims": [2]}]
    assert out["model_transaction_policy"] == {"decoupled": False}
    assert config["output"] == []  # the caller's dict is not modified

    bad = tmp_path / "bad.py"
    bad.write_text(
        "class TritonPythonModel:\n"
        "    @staticmethod\n"
        "    def auto_complete_config(c):\n"
        "        c.set_max_batch_size(-1)\n"
        "        return c\n"
    )
    with pytest.raises(InternalError, match="configuration specified max_batch_size 0"):
        run_python_auto_complete(bad, config)
