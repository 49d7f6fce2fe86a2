"""pb_utils refusing bad arguments as Triton 2.51 does, in both execution modes.

Triton's QA (L0_backend_python/argument_validation) checks that ``Tensor``,
``InferenceRequest``, ``InferenceResponse`` and ``Logger`` refuse None, lists,
scalars and plain ints with pybind11's TypeError, and that a None tensor inside a
list or an empty tensor name is a TritonModelException with Triton's words. The
probe model makes each call inside ``execute`` and answers what happened; the
expected answers are what Triton 2.51 answered, and with TRITONX_REFERENCE_CMD set
the reference must give the same ones. A TypeError is compared on its first line
(pybind11's "Invoked with" part shows object addresses).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from serverutil import needs_reference, run_either

PROBE_CONFIG = """
name: "probe"
backend: "python"
max_batch_size: 0
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

PROBE_MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils

A = np.asarray([1, 2], dtype=np.int32)


class Producer:  # DLPack-capable, not a numpy array
    def __dlpack__(self, stream=None):
        return A.__dlpack__()

    def __dlpack_device__(self):
        return A.__dlpack_device__()


def request(**changes):
    args = dict(inputs=[pb_utils.Tensor("I", A)], model_name="m",
                requested_output_names=["o"])
    args.update(changes)
    return pb_utils.InferenceRequest(**args)


CALLS = {
    "request inputs [None]": lambda: request(inputs=[None]),
    "request inputs [tensor, None]": lambda: request(
        inputs=[pb_utils.Tensor("I", A), None], request_id="r7"),
    "request inputs [1]": lambda: request(inputs=[1]),
    "request inputs None": lambda: request(inputs=None),
    "request correlation id None": lambda: request(correlation_id=None),
    "request correlation id None, inputs [None]": lambda: request(
        correlation_id=None, inputs=[None]),
    "request correlation id float": lambda: request(correlation_id=1.5),
    "request correlation id True": lambda: [request(correlation_id=True).correlation_id()],
    "request inputs []": lambda: request(inputs=[], requested_output_names=[]),
    "response [None]": lambda: pb_utils.InferenceResponse(output_tensors=[None]),
    "response [1]": lambda: pb_utils.InferenceResponse(output_tensors=[1]),
    "response None": lambda: pb_utils.InferenceResponse(output_tensors=None),
    "response no arguments": lambda: pb_utils.InferenceResponse(),
    "response tuple": lambda: pb_utils.InferenceResponse((pb_utils.Tensor("O", A),)),
    "response error only": lambda: pb_utils.InferenceResponse(
        error=pb_utils.TritonError("e")),
    "response error str": lambda: pb_utils.InferenceResponse([], error="x"),
    "error code int": lambda: pb_utils.TritonError("e", 3),
    "error code member": lambda: [
        int(pb_utils.TritonError("e", pb_utils.TritonError.NOT_FOUND).code())],
    "error message int": lambda: pb_utils.TritonError(7),
    "error default code": lambda: [int(pb_utils.TritonError("e").code())],
    "tensor data None": lambda: pb_utils.Tensor("X", None),
    "tensor empty name, data None": lambda: pb_utils.Tensor("", None),
    "tensor name None": lambda: pb_utils.Tensor(None, A),
    "tensor data list": lambda: pb_utils.Tensor("X", [1, 2]),
    "tensor data numpy scalar": lambda: pb_utils.Tensor("X", np.float32(1)),
    "tensor data int": lambda: pb_utils.Tensor("X", 1),
    "tensor data str": lambda: pb_utils.Tensor("X", "abc"),
    "tensor data DLPack producer": lambda: pb_utils.Tensor("X", Producer()),
    "tensor empty name": lambda: pb_utils.Tensor("", A),
    "tensor keywords": lambda: pb_utils.Tensor(name="X", data=A),
    "tensor 0-d array": lambda: pb_utils.Tensor("X", np.array(1.5)).shape(),
    "tensor ndarray subclass": lambda: pb_utils.Tensor("X", np.matrix([[1, 2]])).shape(),
    "from_dlpack None": lambda: pb_utils.Tensor.from_dlpack("X", None),
    "from_dlpack list": lambda: pb_utils.Tensor.from_dlpack("X", [1, 2]),
    "from_dlpack empty name, None": lambda: pb_utils.Tensor.from_dlpack("", None),
    "from_dlpack empty name": lambda: pb_utils.Tensor.from_dlpack("", A),
    "log level None": lambda: pb_utils.Logger.log("x", None),
    "log level int": lambda: pb_utils.Logger.log("x", 1),
    "log level str": lambda: pb_utils.Logger.log("x", "INFO"),
    "log message None": lambda: pb_utils.Logger.log(None),
    "log message int": lambda: pb_utils.Logger.log(5, pb_utils.Logger.INFO),
    "log message bytes": lambda: pb_utils.Logger.log(b"bytes"),
    "log with level": lambda: pb_utils.Logger.log("x", pb_utils.Logger.VERBOSE),
    "log keywords": lambda: pb_utils.Logger.log(message="x", level=pb_utils.Logger.LogLevel.WARNING),
    "log_info None": lambda: pb_utils.Logger.log_info(None),
    "log_warn None": lambda: pb_utils.Logger.log_warn(None),
    "log_error None": lambda: pb_utils.Logger.log_error(None),
    "log_verbose None": lambda: pb_utils.Logger.log_verbose(None),
    "log_info 5": lambda: pb_utils.Logger.log_info(5),
    "log_warn 5": lambda: pb_utils.Logger.log_warn(5),
    "log_error 5": lambda: pb_utils.Logger.log_error(5),
    "log_verbose 5": lambda: pb_utils.Logger.log_verbose(5),
    "log_info bytes": lambda: pb_utils.Logger.log_info(b"b"),
    "log_info keyword": lambda: pb_utils.Logger.log_info(message="k"),
}


def outcome(call):
    try:
        value = call()
    except Exception as error:
        return type(error).__name__ + ": " + str(error)
    return "ok " + repr(value) if isinstance(value, list) else "ok"


class TritonPythonModel:
    def execute(self, requests):
        seen = json.dumps({name: outcome(call) for name, call in CALLS.items()})
        return [pb_utils.InferenceResponse(
            [pb_utils.Tensor("OUT", np.array([seen], dtype=object))])
            for _ in requests]
"""

CONSTRUCTOR = (
    "TypeError: __init__(): incompatible constructor arguments. The following "
    "argument types are supported:"
)


def _function(name: str) -> str:
    return (
        f"TypeError: {name}(): incompatible function arguments. The following "
        "argument types are supported:"
    )


LOGGERS = ("log_info", "log_warn", "log_error", "log_verbose")
NOT_DLPACK = (
    "TritonModelException: Provided tensor is not supported. Tensor must be a DLPack "
    "capsule         or have `__dlpack__` and `__dlpack_device__` attributes"
)
EMPTY_NAME = "TritonModelException: Tensor name cannot be an empty string."
TRITON_2_51 = {
    "request inputs [None]": (
        "TritonModelException: Input tensor for request with id '' and model name "
        "'m' should not be empty."
    ),
    "request inputs [tensor, None]": (
        "TritonModelException: Input tensor for request with id 'r7' and model name "
        "'m' should not be empty."
    ),
    "request inputs [1]": CONSTRUCTOR,
    "request inputs None": CONSTRUCTOR,
    "request correlation id None": CONSTRUCTOR,
    "request correlation id None, inputs [None]": CONSTRUCTOR,
    "request correlation id float": (
        "TritonModelException: Correlation ID must be integer or string"
    ),
    "request correlation id True": "ok [1]",
    "request inputs []": "ok",
    "response [None]": (
        "TritonModelException: Output tensor for inference response should not be "
        "empty."
    ),
    "response [1]": CONSTRUCTOR,
    "response None": CONSTRUCTOR,
    "response no arguments": "ok",
    "response tuple": "ok",
    "response error only": "ok",
    "response error str": CONSTRUCTOR,
    "error code int": CONSTRUCTOR,
    "error code member": "ok [2]",
    "error message int": CONSTRUCTOR,
    "error default code": "ok [1]",
    "tensor data None": CONSTRUCTOR,
    "tensor empty name, data None": CONSTRUCTOR,
    "tensor name None": CONSTRUCTOR,
    "tensor data list": CONSTRUCTOR,
    "tensor data numpy scalar": CONSTRUCTOR,
    "tensor data int": CONSTRUCTOR,
    "tensor data str": CONSTRUCTOR,
    "tensor data DLPack producer": CONSTRUCTOR,
    "tensor empty name": EMPTY_NAME,
    "tensor keywords": "TypeError",  # pybind11's words and Python's differ here
    "tensor 0-d array": "ok []",
    "tensor ndarray subclass": "ok [1, 2]",
    "from_dlpack None": NOT_DLPACK,
    "from_dlpack list": NOT_DLPACK,
    "from_dlpack empty name, None": EMPTY_NAME,
    "from_dlpack empty name": EMPTY_NAME,
    "log level None": _function("log"),
    "log level int": _function("log"),
    "log level str": _function("log"),
    "log message None": _function("log"),
    "log message int": _function("log"),
    "log message bytes": "ok",
    "log with level": "ok",
    "log keywords": "ok",
    **{f"{fn} None": _function(fn) for fn in LOGGERS},
    **{f"{fn} 5": _function(fn) for fn in LOGGERS},
    "log_info bytes": "ok",
    "log_info keyword": "ok",
}


def _outcomes(kind: str, repo: Path, *args: str) -> dict[str, str]:
    with run_either(kind, repo, *args) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        result = client.infer("probe", []).as_numpy("OUT")
        assert result is not None
        seen: dict[str, str] = json.loads(result[0])
        return seen


def _check(seen: dict[str, str]) -> None:
    assert seen.keys() == TRITON_2_51.keys()
    for case, expected in TRITON_2_51.items():
        if expected.startswith("TypeError"):
            assert seen[case].startswith(expected), (case, seen[case])
        else:
            assert seen[case] == expected, (case, seen[case])


@pytest.fixture(scope="module")
def probe_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("argument-validation")
    (repo / "probe" / "1").mkdir(parents=True)
    (repo / "probe" / "config.pbtxt").write_text(PROBE_CONFIG)
    (repo / "probe" / "1" / "model.py").write_text(PROBE_MODEL)
    return repo


@pytest.mark.parametrize("mode", ["in-process", "process"])
def test_arguments_refused_as_triton_refuses_them(probe_repo: Path, mode: str) -> None:
    _check(
        _outcomes(
            "tritonx", probe_repo, f"--backend-config=python,execution-mode={mode}"
        )
    )


@needs_reference
def test_reference_refuses_the_same(probe_repo: Path) -> None:
    """The table above is Triton's: checked against the reference itself."""
    _check(_outcomes("reference", probe_repo))
