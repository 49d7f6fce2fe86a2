"""pb_utils arguments taken as Triton's pybind11 bindings take them
(tritonx/backends/pb/binding_args.py), and error codes shown as they show them,
in both execution modes.

NVIDIA's BLS example names the called model with a BYTES input
(``model_name=request_input.as_numpy()[0]``, a ``bytes`` object): Triton decodes
it, and tritonx used to look for a model called ``b'add_sub'``. The probe model
tries each argument shape inside ``execute`` and answers what happened; the
expected answers are Triton 2.51's, and with TRITONX_REFERENCE_CMD set the
reference must give the same ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from serverutil import needs_reference, run_either
from testmodels import ADD_SUB, ADD_SUB_PY

PROBE_CONFIG = """
name: "probe"
backend: "python"
max_batch_size: 0
input [ { name: "NAME" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

PROBE_MODEL = """
import json
import numpy as np
import triton_python_backend_utils as pb_utils


def outcome(fn):
    try:
        return "ok " + repr(fn())
    except Exception as error:  # the first line is what the test compares
        return type(error).__name__ + ": " + str(error).split("\\n")[0]


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            name = pb_utils.get_input_tensor_by_name(request, "NAME").as_numpy()[0]
            x = np.arange(4, dtype=np.float32)

            def call(**changes):
                args = dict(
                    model_name="add_sub",
                    requested_output_names=["OUTPUT0"],
                    inputs=[pb_utils.Tensor("INPUT0", x), pb_utils.Tensor("INPUT1", x)],
                )
                args.update(changes)
                response = pb_utils.InferenceRequest(**args).exec()
                if response.has_error():
                    return "error " + response.error().message()
                return sorted(t.name() for t in response.output_tensors())

            def code():
                return pb_utils.TritonError("m", pb_utils.TritonError.NOT_FOUND).code()

            seen = {
                "model name from a BYTES input": outcome(lambda: call(model_name=name)),
                "bytes request id": outcome(lambda: call(request_id=b"r1")),
                "bytes output names": outcome(
                    lambda: call(requested_output_names=[b"OUTPUT0"])),
                "tuple of output names": outcome(
                    lambda: call(requested_output_names=("OUTPUT0",))),
                "numpy array of output names": outcome(
                    lambda: call(requested_output_names=np.array(["OUTPUT0"], object))),
                "numpy version": outcome(lambda: call(model_version=np.int64(1))),
                "int model name": outcome(lambda: call(model_name=5)),
                "string of output names": outcome(
                    lambda: call(requested_output_names="OUTPUT0")),
                "set of output names": outcome(
                    lambda: call(requested_output_names={"OUTPUT0"})),
                "string version": outcome(lambda: call(model_version="1")),
                "float version": outcome(lambda: call(model_version=1.0)),
                "int request id": outcome(lambda: call(request_id=5)),
                "no model name": outcome(lambda: pb_utils.InferenceRequest(
                    inputs=[], requested_output_names=["OUTPUT0"])),
                "no inputs": outcome(lambda: pb_utils.InferenceRequest(
                    model_name="add_sub", requested_output_names=["OUTPUT0"])),
                "no output names": outcome(lambda: pb_utils.InferenceRequest(
                    model_name="add_sub", inputs=[])),
                "generator of inputs": outcome(
                    lambda: call(inputs=(pb_utils.Tensor(n, x) for n in ("INPUT0", "INPUT1")))),
                "inputs not tensors": outcome(lambda: call(inputs=[x])),
                "non-UTF-8 model name": outcome(
                    lambda: call(model_name=b"add\\xffsub")),
                "bytes tensor name": outcome(lambda: pb_utils.Tensor(b"T", x).name()),
                "int tensor name": outcome(lambda: pb_utils.Tensor(5, x).name()),
                "bytes dlpack name": outcome(
                    lambda: pb_utils.Tensor.from_dlpack(b"D", pb_utils.Tensor("T", x)).name()),
                "int dlpack name": outcome(
                    lambda: pb_utils.Tensor.from_dlpack(7, pb_utils.Tensor("T", x))),
                "error code as text": outcome(lambda: str(code())),
                "error code repr": outcome(lambda: repr(code())),
                "error code formatted": outcome(lambda: "{}".format(code())),
                "error code as number": outcome(lambda: int(code())),
                "error code equals its number": outcome(lambda: code() == 2),
            }
            text = np.array([json.dumps(seen)], dtype=object)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", text)]))
        return responses
"""

CONSTRUCTOR = (
    "TypeError: __init__(): incompatible constructor arguments. The following "
    "argument types are supported:"
)
TRITON_2_51 = {
    "model name from a BYTES input": "ok ['OUTPUT0']",
    "bytes request id": "ok ['OUTPUT0']",
    "bytes output names": "ok ['OUTPUT0']",
    "tuple of output names": "ok ['OUTPUT0']",
    "numpy array of output names": "ok ['OUTPUT0']",
    "numpy version": "ok ['OUTPUT0']",
    "int model name": CONSTRUCTOR,
    "string of output names": CONSTRUCTOR,
    "set of output names": CONSTRUCTOR,
    "string version": CONSTRUCTOR,
    "float version": CONSTRUCTOR,
    "int request id": CONSTRUCTOR,
    "no model name": CONSTRUCTOR,
    "no inputs": CONSTRUCTOR,
    "no output names": CONSTRUCTOR,
    "generator of inputs": CONSTRUCTOR,
    "inputs not tensors": CONSTRUCTOR,
    "non-UTF-8 model name": (
        "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position"
    ),
    "bytes tensor name": "ok 'T'",
    "int tensor name": CONSTRUCTOR,
    "bytes dlpack name": "ok 'D'",
    "int dlpack name": (
        "TypeError: from_dlpack(): incompatible function arguments. The following "
        "argument types are supported:"
    ),
    # A code shows as pybind11 shows an enum member, and still is its number.
    "error code as text": "ok '__ErrorCode.NOT_FOUND'",
    "error code repr": "ok '<__ErrorCode.NOT_FOUND: 2>'",
    "error code formatted": "ok '__ErrorCode.NOT_FOUND'",
    "error code as number": "ok 2",
    "error code equals its number": "ok True",
}


def _outcomes(kind: str, repo: Path, *args: str) -> dict[str, str]:
    with run_either(kind, repo, *args) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        name = httpclient.InferInput("NAME", [1], "BYTES")
        name.set_data_from_numpy(np.array([b"add_sub"], dtype=object))
        result = client.infer("probe", [name]).as_numpy("OUT")
        assert result is not None
        seen: dict[str, str] = json.loads(result[0])
        # Where Triton fails to decode (reading the name back) is not where the
        # constructor does: compare up to the position.
        seen["non-UTF-8 model name"] = seen["non-UTF-8 model name"].split(" position")[
            0
        ]
        return seen


@pytest.fixture(scope="module")
def probe_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("binding-args")
    for name, config, model in (
        ("probe", PROBE_CONFIG, PROBE_MODEL),
        ("add_sub", ADD_SUB, ADD_SUB_PY),
    ):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1" / "model.py").write_text(model)
    return repo


def _expected() -> dict[str, str]:
    return {k: v.split(" position")[0] for k, v in TRITON_2_51.items()}


@pytest.mark.parametrize("mode", ["in-process", "process"])
def test_arguments_as_triton_binds_them(probe_repo: Path, mode: str) -> None:
    seen = _outcomes(
        "tritonx", probe_repo, f"--backend-config=python,execution-mode={mode}"
    )
    for case, expected in _expected().items():
        assert seen[case].startswith(expected), (case, seen[case])


@needs_reference
def test_reference_takes_the_same(probe_repo: Path) -> None:
    """The table above is Triton's: checked against the reference itself."""
    seen = _outcomes("reference", probe_repo)
    for case, expected in _expected().items():
        assert seen[case].startswith(expected), (case, seen[case])
