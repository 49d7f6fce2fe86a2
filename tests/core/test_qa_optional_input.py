"""Optional inputs under the dynamic batcher and in ensembles, after Triton's
L0_optional_input QA, as differential tests against Triton 2.51.

Triton's QA tells batching apart by response times; here the batch sizes the
model's statistics record tell it, and each check is built so that its outcome
does not depend on how fast the machine is: a wrong batching rule shows up as a
batch of 4, which only forms when requests with different input sets are mixed.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from serverutil import differential, run_either
from testmodels import write_model

IO = """
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] optional: true },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 1 ] optional: true }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 1 ] }
]
"""

# OUTPUTk = INPUTk, zeros shaped like the other input when INPUTk is absent
# (what Triton's identity backend gives for an absent optional input).
IDENTITY_2 = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            given = {}
            for name in ("INPUT0", "INPUT1"):
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    given[name] = tensor.as_numpy()
            shape = next(iter(given.values())).shape
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT" + name[-1],
                                given.get(name, np.zeros(shape, np.float32)))
                for name in ("INPUT0", "INPUT1")
            ]))
        return responses
"""

# Only the outputs whose inputs were given: an ensemble's connecting tensor
# may then be left unproduced.
PRESENT_ONLY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            outputs = []
            for k in ("0", "1"):
                tensor = pb_utils.get_input_tensor_by_name(request, "INPUT" + k)
                if tensor is not None:
                    outputs.append(pb_utils.Tensor("OUTPUT" + k, tensor.as_numpy()))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""


def python_config(name: str, batching: str) -> str:
    return f'name: "{name}"\nbackend: "python"\nmax_batch_size: 4\n{IO}{batching}\n'


def ensemble_config(name: str, steps: str) -> str:
    return (
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 4\n{IO}'
        f"ensemble_scheduling {{ step [ {steps} ] }}\n"
    )


def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    maps = [f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()]
    maps += [f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
    return f'{{ model_name: "{model}" model_version: -1 {" ".join(maps)} }}'


def write_repo(repo: Path) -> None:
    # The preferred size is reached by 4 requests with the same inputs however
    # slowly they arrive within the (long) delay.
    write_model(
        repo,
        "same",
        python_config(
            "same",
            "dynamic_batching { preferred_batch_size: [ 4 ] "
            "max_queue_delay_microseconds: 60000000 }",
        ),
        IDENTITY_2,
    )
    # Requests with different inputs must never share a batch; the short delay
    # only bounds how long a lone request waits.
    write_model(
        repo,
        "mixed",
        python_config(
            "mixed",
            "dynamic_batching { preferred_batch_size: [ 4 ] "
            "max_queue_delay_microseconds: 1000000 }",
        ),
        IDENTITY_2,
    )
    write_model(repo, "identity_2", python_config("identity_2", ""), IDENTITY_2)
    write_model(repo, "present_only", python_config("present_only", ""), PRESENT_ONLY)
    both = {"INPUT0": "INPUT0", "INPUT1": "INPUT1"}
    outs = {"OUTPUT0": "OUTPUT0", "OUTPUT1": "OUTPUT1"}
    for name, steps in {
        # A plain wrapper: the ensemble passes on only what the request gave.
        "wrapper": step("identity_2", both, outs),
        # The second step connects only INPUT1 (allowed: INPUT0 is optional).
        "pipeline": step("identity_2", both, {"OUTPUT0": "internal"})
        + ", "
        + step("identity_2", {"INPUT1": "internal"}, outs),
        # The second step's inputs are all connected, but the first step
        # produces only those whose inputs the request gave.
        "connecting": step("present_only", both, {"OUTPUT0": "mid0", "OUTPUT1": "mid1"})
        + ", "
        + step("present_only", {"INPUT0": "mid0", "INPUT1": "mid1"}, outs),
    }.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(ensemble_config(name, steps))


VALUES = {"INPUT0": 1.0, "INPUT1": 2.0}


def infer(
    url: str, model: str, given: tuple[str, ...], wanted: tuple[str, ...]
) -> dict[str, Any]:
    """One request giving ``given`` inputs; the ``wanted`` outputs as lists, or
    the error's text."""
    client = grpcclient.InferenceServerClient(url)
    inputs = []
    for name in given:
        tensor = grpcclient.InferInput(name, [1, 1], "FP32")
        tensor.set_data_from_numpy(np.full((1, 1), VALUES[name], np.float32))
        inputs.append(tensor)
    outputs = [grpcclient.InferRequestedOutput(name) for name in wanted]
    try:
        result = client.infer(model, inputs, outputs=outputs or None)
    except Exception as error:  # the text is what is compared
        return {"error": str(error)}
    finally:
        client.close()
    response = result.get_response()
    return {
        out.name: result.as_numpy(out.name).tolist()
        for out in sorted(response.outputs, key=lambda o: o.name)
    }


def batch_stats(url: str, model: str, requests: int) -> dict[str, Any]:
    """Execution counts per batch size once ``requests`` inferences are counted
    (the statistics are written just after the responses go out)."""
    client = grpcclient.InferenceServerClient(url)
    try:
        for _ in range(200):
            stats = client.get_inference_statistics(model, "1").model_stats[0]
            if stats.inference_count >= requests:
                break
            time.sleep(0.05)
        return {
            "inference_count": stats.inference_count,
            "execution_count": stats.execution_count,
            "batches": sorted(
                (b.batch_size, b.compute_infer.count) for b in stats.batch_stats
            ),
        }
    finally:
        client.close()


def concurrent_requests(
    url: str, model: str, input_sets: list[tuple[str, ...]]
) -> list[dict[str, Any]]:
    with concurrent.futures.ThreadPoolExecutor(len(input_sets)) as pool:
        futures = [
            pool.submit(infer, url, model, given, ("OUTPUT0", "OUTPUT1"))
            for given in input_sets
        ]
        return [f.result() for f in futures]


ZERO = [[0.0]]
ONE = [[1.0]]
TWO = [[2.0]]


def test_same_optional_inputs_batch_together(tmp_path: Path) -> None:
    write_repo(tmp_path)

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, tmp_path) as server:
            answers = concurrent_requests(server.grpc_url, "same", [("INPUT1",)] * 4)
            return {
                "answers": answers,
                "stats": batch_stats(server.grpc_url, "same", 4),
            }

    seen = differential(scenario)
    assert seen["answers"] == [{"OUTPUT0": ZERO, "OUTPUT1": TWO}] * 4
    assert seen["stats"]["batches"] == [(4, 1)]


def test_different_optional_inputs_never_share_a_batch(tmp_path: Path) -> None:
    write_repo(tmp_path)
    sets = [("INPUT0",), ("INPUT1",), ("INPUT0",), ("INPUT0", "INPUT1")]

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, tmp_path) as server:
            answers = concurrent_requests(server.grpc_url, "mixed", sets)
            stats = batch_stats(server.grpc_url, "mixed", len(sets))
            # How the requests meet is up to the machine; that no batch
            # holds all four is not (the two INPUT0-only ones may pair).
            return {
                "answers": answers,
                "inference_count": stats["inference_count"],
                "largest_batch_below_4": max(b for b, _ in stats["batches"]) < 4,
            }

    seen = differential(scenario)
    assert seen["answers"] == [
        {"OUTPUT0": ONE, "OUTPUT1": ZERO},
        {"OUTPUT0": ZERO, "OUTPUT1": TWO},
        {"OUTPUT0": ONE, "OUTPUT1": ZERO},
        {"OUTPUT0": ONE, "OUTPUT1": TWO},
    ]
    assert seen["largest_batch_below_4"]


def test_optional_inputs_through_ensembles(tmp_path: Path) -> None:
    write_repo(tmp_path)
    both = ("OUTPUT0", "OUTPUT1")
    cases: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        ("wrapper", ("INPUT0", "INPUT1"), both),
        ("wrapper", ("INPUT1",), both),
        ("wrapper", ("INPUT0",), both),
        ("pipeline", ("INPUT0", "INPUT1"), both),
        ("pipeline", ("INPUT1",), both),
        ("connecting", ("INPUT0",), ("OUTPUT0",)),
        ("connecting", ("INPUT1",), ("OUTPUT1",)),
        ("connecting", ("INPUT0", "INPUT1"), both),
        # The output the ensemble could not produce, asked for.
        ("connecting", ("INPUT0",), both),
        ("connecting", ("INPUT0",), ()),
    ]

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, tmp_path) as server:
            return {
                f"{model} {given} -> {wanted}": infer(
                    server.grpc_url, model, given, wanted
                )
                for model, given, wanted in cases
            }

    seen = differential(scenario)
    assert seen["wrapper ('INPUT0',) -> ('OUTPUT0', 'OUTPUT1')"] == {
        "OUTPUT0": ONE,
        "OUTPUT1": ZERO,
    }
    # OUTPUT0 of the pipeline comes from an absent input, OUTPUT1 is INPUT0.
    assert seen["pipeline ('INPUT0', 'INPUT1') -> ('OUTPUT0', 'OUTPUT1')"] == {
        "OUTPUT0": ZERO,
        "OUTPUT1": ONE,
    }
    assert seen["connecting ('INPUT0',) -> ('OUTPUT0',)"] == {"OUTPUT0": ONE}
