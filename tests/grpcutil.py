"""Shared pieces of the gRPC frontend tests: the model repository they serve (real
python-backend models run by a real ``tritonx`` server, started with
``serverutil.run_server``), handles on its held model, and small helpers for
building tritonclient inputs.

The repository is served in explicit mode with the models in ``STARTUP_MODELS``
loaded at start; ``slowload`` stays in the repository unloaded (its ``initialize``
blocks until the test lets it go) and ``notready`` fails to initialize, so the server
runs with ``--exit-on-error=false`` and ``--strict-readiness=false``.
"""

from __future__ import annotations

import itertools
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serverutil import RunningServer
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tritonx.dtypes import NUMPY_DTYPES

# Every wire datatype: the numeric ones, and BYTES.
DTYPES = [*NUMPY_DTYPES, "BYTES"]

# INPUTn echoed as OUTPUTn. numpy has no bfloat16, so a BF16 input is handed on
# through DLPack, the way Triton's python backend documents for BF16. A request
# parameter "fail" (request.parameters() is JSON text, as in Triton) makes the
# response an INVALID_ARG error carrying its value.
ECHO_MODEL = """
import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.pairs = [
            (i["name"], o["name"], o["data_type"])
            for i, o in zip(config["input"], config["output"])
        ]

    def execute(self, requests):
        responses = []
        for request in requests:
            fail = json.loads(request.parameters() or "{}").get("fail")
            if fail:
                error = pb_utils.TritonError(str(fail), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            outputs = []
            for name, out, datatype in self.pairs:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if datatype == "TYPE_BF16":
                    outputs.append(pb_utils.Tensor.from_dlpack(out, tensor.to_dlpack()))
                else:
                    outputs.append(pb_utils.Tensor(out, tensor.as_numpy()))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""

# FP32 INPUT0 -> OUTPUT0, held: the first element of INPUT0 is the request's tag. An
# execution leaves "ran-<tag>" in the model directory, then waits until the request
# is cancelled (leaving "cancelled-<tag>") or "release-<tag>" (or "release-all")
# appears, so tests decide when a request completes, without timing.
HELD_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]

    def _has(self, name):
        return os.path.exists(os.path.join(self.dir, name))

    def execute(self, requests):
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            tag = str(int(value.flat[0]))
            open(os.path.join(self.dir, "ran-" + tag), "w").close()
            while not (self._has("release-" + tag) or self._has("release-all")):
                if request.is_cancelled():
                    open(os.path.join(self.dir, "cancelled-" + tag), "w").close()
                    break
                time.sleep(0.01)
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", value)])
            )
        return responses
"""


def held_inputs(tag: int) -> list[grpcclient.InferInput]:
    """HELD_MODEL's INPUT0 for the request tagged ``tag``."""
    tensor = grpcclient.InferInput("INPUT0", [1], "FP32")
    tensor.set_data_from_numpy(np.array([tag], dtype=np.float32))
    return [tensor]


# An echo model whose initialize leaves "loading" in its directory, then waits for
# "go" there (for at most two minutes, so that a failed test cannot hang the server).
SLOW_LOAD_MODEL = """
import os
import time
""" + ECHO_MODEL.replace(
    "    def initialize(self, args):\n",
    """    def initialize(self, args):
        where = args["model_repository"]
        open(os.path.join(where, "loading"), "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(where, "go")):
            if time.monotonic() > deadline:
                raise RuntimeError("the test never let the load go on")
            time.sleep(0.01)
""",
)

FAILING_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("notready refuses to initialize")

    def execute(self, requests):
        return []
"""


def config_text(
    name: str, datatype: str = "FP32", max_batch: int = 8, extra: str = ""
) -> str:
    """A python-backend config: INPUT0 -> OUTPUT0 of one datatype, dims [-1]."""
    kind = "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"
    return f"""name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [ {{ name: "INPUT0", data_type: {kind}, dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: {kind}, dims: [ -1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{extra}"""


def _write(root: Path, name: str, config: str, source: str, versions=(1,)) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(config)
    for version in versions:
        (root / name / str(version)).mkdir()
        (root / name / str(version) / "model.py").write_text(source)


def write_repository(root: Path, names: list[str] | None = None) -> Path:
    """Write the test repository under ``root`` (all models, or just ``names``)."""
    models: dict[str, tuple[str, str, tuple[int, ...]]] = {
        f"identity_{d.lower()}": (
            config_text(f"identity_{d.lower()}", d),
            ECHO_MODEL,
            (1,),
        )
        for d in DTYPES
    }
    models["identity"] = (config_text("identity"), ECHO_MODEL, (1,))
    models["nobatch"] = (config_text("nobatch", max_batch=0), ECHO_MODEL, (1,))
    models["slowmodel"] = (config_text("slowmodel"), HELD_MODEL, (1,))
    models["multi"] = (
        config_text("multi", extra="version_policy: { all { } }"),
        ECHO_MODEL,
        (1, 3),
    )
    models["notready"] = (config_text("notready"), FAILING_MODEL, (1,))
    models["slowload"] = (config_text("slowload"), SLOW_LOAD_MODEL, (1,))
    root.mkdir(parents=True, exist_ok=True)
    for name, (config, source, versions) in models.items():
        if names is None or name in names:
            _write(root, name, config, source, versions)
    return root


# Everything but slowload (loaded by its test).
STARTUP_MODELS = [
    *(f"identity_{d.lower()}" for d in DTYPES),
    "identity",
    "nobatch",
    "slowmodel",
    "multi",
    "notready",
]


def server_args(models: list[str] = STARTUP_MODELS) -> list[str]:
    return [
        "--model-control-mode=explicit",
        *(f"--load-model={name}" for name in models),
        "--exit-on-error=false",
        "--strict-readiness=false",
    ]


def wait_for(path: Path, timeout: float = 60.0) -> None:
    """Wait until a marker file exists (bounded, so a broken server fails the test)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared in {path.parent}")
        time.sleep(0.01)


_tags = itertools.count(1)


class Held:
    """The held model's requests, by tag (unique per test run)."""

    def __init__(self, repo: Path) -> None:
        self.dir = repo / "slowmodel"

    @staticmethod
    def new_tag() -> int:
        return next(_tags)

    @staticmethod
    def input(tag: int) -> grpcclient.InferInput:
        return fp32_input(np.full((1, 4), tag, np.float32))

    def started(self, tag: int) -> None:
        wait_for(self.dir / f"ran-{tag}")

    def ran(self, tag: int) -> bool:
        return (self.dir / f"ran-{tag}").exists()

    def cancelled(self, tag: int) -> bool:
        return (self.dir / f"cancelled-{tag}").exists()

    def release(self, tag: int | str) -> None:
        (self.dir / f"release-{tag}").touch()


def pending(server: RunningServer, model: str) -> int:
    """nv_inference_pending_request_count for a model (requests queued, not running)."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("nv_inference_pending_request_count{") and (
            f'model="{model}"' in line
        ):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def success_count(client: grpcclient.InferenceServerClient, model: str) -> int:
    """The model's successful inferences so far (its statistics, every version)."""
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
    return sum(int(s["inference_stats"]["success"].get("count", 0)) for s in stats)


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def sample(dtype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    count = int(np.prod(shape))
    if dtype == "BOOL":
        return (np.arange(count) % 2 == 0).reshape(shape)
    if dtype == "BYTES":
        return np.array(
            [f"s{i}".encode() * (i + 1) for i in range(count)], dtype=np.object_
        ).reshape(shape)
    if dtype == "BF16":
        return np.arange(count, dtype=np.uint16).reshape(shape) + 16256
    np_type = NUMPY_DTYPES[dtype]
    values = np.arange(count) - (count // 2 if dtype.startswith("INT") else 0)
    return values.astype(np_type).reshape(shape)


def make_input(
    name: str, data: np.ndarray, dtype: str | None = None
) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(
        name, list(data.shape), dtype or np_to_triton_dtype(data.dtype)
    )
    if dtype == "BF16":
        # tritonclient wants float32 for BF16; send the raw uint16 bits instead.
        tensor._raw_content = data.astype("<u2").tobytes()
    else:
        tensor.set_data_from_numpy(data)
    return tensor


def fp32_input(values: np.ndarray | None = None) -> grpcclient.InferInput:
    data = (
        values if values is not None else np.arange(4, dtype=np.float32).reshape(1, 4)
    )
    return make_input("INPUT0", data)


def expect_error(code: grpc.StatusCode, fn, *args, **kwargs) -> str:
    with pytest.raises(InferenceServerException) as info:
        fn(*args, **kwargs)
    assert info.value.status() == str(code), info.value
    return info.value.message()
