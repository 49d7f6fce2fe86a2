"""The workloads ``soak.py`` can run, and the small Python models they serve.

Each workload names the model whose statistics count the inferences, the protocols
its segments alternate between, the extra perf_analyzer flags and the server flags.
The models are written into a temporary repository by ``write_repository`` (nothing
is downloaded); ``identity`` serves ``model_repository/`` as it is.

The leak-prone paths Triton users report (server#6781, #6270, #7727, #3320, #6836)
are the ones covered: decoupled responses over a gRPC stream, BLS calls (sync and
async), sequences (per-correlation-ID state created and dropped), and model
load/unload cycles in EXPLICIT mode (stub processes started and ended).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 16  # FP32 elements per request

_FP32_IO = """
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {dims} ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {dims} ] }} ]
"""

# A decoupled model answering every request with RESPONSES responses and a final flag.
_DECOUPLED_CONFIG = """
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
instance_group [ { count: 1, kind: KIND_CPU } ]
""" + _FP32_IO.format(dims=WIDTH)
_DECOUPLED_MODEL = """
import triton_python_backend_utils as pb_utils

RESPONSES = 4


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            for i in range(RESPONSES):
                out = pb_utils.Tensor("OUTPUT0", data + i)
                sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

# One instance, no batching: the BLS model, the model it calls, the steady model.
_PLAIN_CONFIG = """
backend: "python"
max_batch_size: 0
instance_group [ { count: 1, kind: KIND_CPU } ]
""" + _FP32_IO.format(dims=WIDTH)

# A BLS model calling ``inner`` once with exec() and once with async_exec().
_BLS_MODEL = """
import triton_python_backend_utils as pb_utils


def _inner(data):
    return pb_utils.InferenceRequest(
        model_name="inner",
        requested_output_names=["OUTPUT0"],
        inputs=[pb_utils.Tensor("INPUT0", data)],
    )


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            first = _inner(data).exec()
            if first.has_error():
                raise pb_utils.TritonModelException(first.error().message())
            mid = pb_utils.get_output_tensor_by_name(first, "OUTPUT0").as_numpy()
            second = await _inner(mid).async_exec()
            if second.has_error():
                raise pb_utils.TritonModelException(second.error().message())
            out = pb_utils.get_output_tensor_by_name(second, "OUTPUT0")
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""
_ECHO_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(
                        "OUTPUT0",
                        pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy(),
                    )
                ]
            )
            for r in requests
        ]
"""

# A running sum per sequence, kept by correlation ID in the model and dropped at END;
# the direct strategy gives each sequence a batch slot.
_SEQUENCE_CONFIG = """
backend: "python"
max_batch_size: 8
instance_group [ { count: 1, kind: KIND_CPU } ]
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  direct { }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
""" + _FP32_IO.format(dims=WIDTH)
_SEQUENCE_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            def value(name):
                return pb_utils.get_input_tensor_by_name(request, name).as_numpy()

            corrid = int(value("CORRID").reshape(-1)[0])
            data = value("INPUT0")
            if value("START").reshape(-1)[0]:
                self.sums[corrid] = np.zeros_like(data)
            total = self.sums.get(corrid, np.zeros_like(data)) + data
            self.sums[corrid] = total
            if value("END").reshape(-1)[0]:
                self.sums.pop(corrid, None)
            out = pb_utils.Tensor("OUTPUT0", total)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses

    def finalize(self):
        self.sums.clear()
"""

# The model the lifecycle workload loads and unloads: two instances, so every cycle
# starts and ends two stub processes.
_CHURN_CONFIG = """
backend: "python"
max_batch_size: 0
instance_group [ { count: 2, kind: KIND_CPU } ]
""" + _FP32_IO.format(dims=WIDTH)


@dataclass(frozen=True)
class Workload:
    name: str
    model: str  # whose statistics count the inferences
    protocols: tuple[str, ...]
    perf_args: tuple[str, ...] = ()
    server_args: tuple[str, ...] = ()
    shape: str | None = None  # perf_analyzer --shape, for a variable-size input
    models: dict[str, tuple[str, str]] = field(default_factory=dict)  # config, model.py
    churn_model: str | None = None  # loaded and unloaded in a loop beside the load

    def repository(self, scratch: Path) -> Path:
        """The repository to serve: the example one, or the workload's models."""
        if not self.models:
            return ROOT / "model_repository"
        for name, (config, source) in self.models.items():
            version = scratch / name / "1"
            version.mkdir(parents=True)
            (scratch / name / "config.pbtxt").write_text(
                f'name: "{name}"\n' + textwrap.dedent(config)
            )
            (version / "model.py").write_text(textwrap.dedent(source))
        return scratch


WORKLOADS = {
    w.name: w
    for w in (
        Workload("identity", "identity", ("http", "grpc"), shape=f"INPUT0:{WIDTH}"),
        Workload(
            "decoupled",
            "repeat",
            ("grpc",),
            perf_args=("--streaming",),
            models={"repeat": (_DECOUPLED_CONFIG, _DECOUPLED_MODEL)},
        ),
        Workload(
            "bls",
            "bls",
            ("http", "grpc"),
            models={
                "bls": (_PLAIN_CONFIG, _BLS_MODEL),
                "inner": (_PLAIN_CONFIG, _ECHO_MODEL),
            },
        ),
        Workload(
            "sequence",
            "accumulate",
            ("http", "grpc"),
            perf_args=("--sequence-length", "6"),
            models={"accumulate": (_SEQUENCE_CONFIG, _SEQUENCE_MODEL)},
        ),
        Workload(
            "lifecycle",
            "steady",
            ("http", "grpc"),
            server_args=("--model-control-mode=explicit", "--load-model=steady"),
            models={
                "steady": (_PLAIN_CONFIG, _ECHO_MODEL),
                "churn": (_CHURN_CONFIG, _ECHO_MODEL),
            },
            churn_model="churn",
        ),
    )
}
