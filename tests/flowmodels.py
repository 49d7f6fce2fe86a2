"""A Python model that runs the response flow a request's PROGRAM input asks for,
served under two policies: ``flow_decoupled`` (decoupled) and ``flow_plain`` (the
default). The differential fuzz (tests/fuzz/test_differential_decoupled.py, its
programs: decoupled_strategies.py) and the fixed cases
(tests/streaming/test_response_flow_differential.py) use it, and the ensembles of
``ENSEMBLES`` chain them (tests/fuzz/test_differential_ensemble_flow.py).

A program: ``send``, a list of ``{"response": spec or null, "flags": n}`` the model
sends through the request's response sender (an exception a send raises is caught
and reported by a later response of the request that asks for a report: its TEXT
output then
holds the caught exceptions' types and messages and what the model saw of the
request: id, parameters, requested outputs); ``thread`` (run the sends on a thread
after execute returned); ``end``: "none" (execute returns None), "list" (returns
the responses of ``returns``) or "raise" (raises ValueError(``message``)). A spec:
``{"out": [...], "dtype": ..., "name": ...}`` and/or ``{"text": [...]}``,
``{"report": true}``, ``{"error": msg, "code": name}``. In decoupled mode the model
closes a sender the program left open, so every request ends.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

MODEL = """
import json
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        # Triton adds TritonError to the module after it imported model.py.
        self.codes = {
            name: getattr(pb_utils.TritonError, name)
            for name in ("INVALID_ARG", "UNAVAILABLE", "CANCELLED")
        }
        config = json.loads(args["model_config"])
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        self.caught = []
        self.worker = None

    def response(self, request, spec):
        if spec is None:
            return None
        if "error" in spec:
            code = self.codes.get(spec.get("code"))
            if code is None:
                error = pb_utils.TritonError(spec["error"])
            else:
                error = pb_utils.TritonError(spec["error"], code)
            return pb_utils.InferenceResponse(error=error)
        tensors = []
        if "out" in spec:
            values = np.array(spec["out"], dtype=spec.get("dtype", "int32"))
            tensors.append(pb_utils.Tensor(spec.get("name", "OUT"), values))
        text = list(spec.get("text", []))
        if spec.get("report"):
            seen = {
                "caught": self.caught,
                "id": request.request_id(),
                "parameters": json.loads(request.parameters() or "{}"),
                "requested": sorted(request.requested_output_names()),
            }
            text.append(json.dumps(seen, sort_keys=True))
            self.caught = []
        if text or "text" in spec:
            array = np.array([t.encode() for t in text], dtype=np.object_)
            tensors.append(pb_utils.Tensor("TEXT", array))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def run(self, request, operations):
        sender = request.get_response_sender()
        closed = False
        for operation in operations:
            flags = operation.get("flags", 0)
            try:
                sender.send(self.response(request, operation.get("response")), flags)
                closed = closed or bool(flags & FINAL)
            except Exception as error:
                self.caught.append(f"{type(error).__name__}: {error}")
        if self.decoupled and not closed:
            try:
                sender.send(flags=FINAL)
            except Exception as error:
                self.caught.append(f"closing: {type(error).__name__}: {error}")

    def execute(self, requests):
        # No batching (max_batch_size 0, no dynamic batcher): one request each time.
        if self.worker is not None:  # the previous request's thread has ended
            self.worker.join()
            self.worker = None
        # Reports are per request: a server restarted between two requests (the
        # fuzz restarts a crashed reference) answers the next one alike.
        self.caught = []
        request = requests[0]
        tensor = pb_utils.get_input_tensor_by_name(request, "PROGRAM")
        program = json.loads(tensor.as_numpy().ravel()[0])
        if program.get("thread"):
            self.worker = threading.Thread(
                target=self.run, args=(request, program["send"]))
            self.worker.start()
        else:
            self.run(request, program["send"])
        end = program["end"]
        if end == "raise":
            raise ValueError(program["message"])
        if end == "list":
            return [self.response(request, spec) for spec in program["returns"]]
        return None
"""

_CONFIG = """
max_batch_size: 0
input [ { name: "PROGRAM" data_type: TYPE_STRING dims: [ 1 ] } ]
output [
  { name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

MODELS = {
    "flow_decoupled": _CONFIG + "model_transaction_policy { decoupled: true }\n",
    "flow_plain": _CONFIG,
}


def write_models(repo: Path) -> None:
    for name, config in MODELS.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(
            f'name: "{name}"\nbackend: "python"\n' + textwrap.dedent(config)
        )
        (repo / name / "1" / "model.py").write_text(MODEL)


# Ensembles of the flow models: name -> the steps' models, in order. The first step
# reads the ensemble's PROGRAM; a second step reads the first one's TEXT as its
# PROGRAM (tensor T1), so each response of the first step carries the second
# step's program. "_out1" also exposes the first step's OUT as OUT1.
ENSEMBLES = {
    "ens_p": ("flow_plain",),
    "ens_d": ("flow_decoupled",),
    "ens_pp": ("flow_plain", "flow_plain"),
    "ens_pd": ("flow_plain", "flow_decoupled"),
    "ens_dp": ("flow_decoupled", "flow_plain"),
    "ens_dd": ("flow_decoupled", "flow_decoupled"),
    "ens_dp_out1": ("flow_decoupled", "flow_plain"),
}


def ensemble_outputs(name: str) -> tuple[str, ...]:
    return ("OUT1", "OUT", "TEXT") if name.endswith("_out1") else ("OUT", "TEXT")


def _step(model: str, program: str, outputs: dict[str, str]) -> str:
    maps = " ".join(
        f'output_map {{ key: "{key}" value: "{value}" }}'
        for key, value in outputs.items()
    )
    return (
        f'{{ model_name: "{model}" model_version: -1 '
        f'input_map {{ key: "PROGRAM" value: "{program}" }} {maps} }}'
    )


def ensemble_config(name: str) -> str:
    models = ENSEMBLES[name]
    last = {"OUT": "OUT", "TEXT": "TEXT"}
    if len(models) == 1:
        steps = [_step(models[0], "PROGRAM", last)]
    else:
        first = (
            {"OUT": "OUT1", "TEXT": "T1"} if name.endswith("_out1") else {"TEXT": "T1"}
        )
        steps = [_step(models[0], "PROGRAM", first), _step(models[1], "T1", last)]
    outputs = {"OUT1": "TYPE_INT32", "OUT": "TYPE_INT32", "TEXT": "TYPE_STRING"}
    declared = ",\n  ".join(
        f'{{ name: "{output}" data_type: {outputs[output]} dims: [ -1 ] }}'
        for output in ensemble_outputs(name)
    )
    return (
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
        'input [ { name: "PROGRAM" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        f"output [\n  {declared}\n]\n"
        "ensemble_scheduling { step [\n  " + ",\n  ".join(steps) + "\n] }\n"
    )


def write_ensembles(repo: Path) -> None:
    """The flow models and every ensemble of ``ENSEMBLES``."""
    write_models(repo)
    for name in ENSEMBLES:
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(ensemble_config(name))
