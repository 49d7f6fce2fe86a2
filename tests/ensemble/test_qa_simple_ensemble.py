"""L0_simple_ensemble, tritonx against Triton 2.51 (the cases 2.51 has: its
ensemble back-pressure setting came later).

* Steps pinned to a version: an ensemble whose OUTPUT0 is computed by the latest
  version of a two-version model and OUTPUT1 by version 1; both versions run
  once per step.
* A request for OUTPUT0 alone runs only the steps OUTPUT0 needs: version 1 of
  the composing model is not run.
* Sequence flags sent with stream requests to an ensemble come back on its
  responses' parameters; every ensemble response has them (id 0 and both flags
  false without a sequence; a string id comes back as a string), while a
  composing model's own responses have none. (A step response naming another
  sequence, which 2.51's python backend cannot send, is tested in
  tests/cpp/test_ensemble_scheduler.cc.)
* A composing model that leaves out one of its declared outputs: the ensemble
  answers with the outputs it got.

Both servers run in the default (NONE) mode on one repository, shared by the
module; every observation is compared, and checked on tritonx alone without the
reference. Statistics are read once they reach their expected totals (Triton
records them after it answers).
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, reference_command, run_reference, run_server

# INPUT0, INPUT1 -> OUTPUT0 = sum, OUTPUT1 = difference (INT32 [16]).
ADD_SUB_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            outputs = [pb_utils.Tensor("OUTPUT0", a + b)]
            if WITH_DIFFERENCE:
                outputs.append(pb_utils.Tensor("OUTPUT1", a - b))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""

IO = """
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
        { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
         { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
"""


def step(
    version: int, model: str, inputs: tuple[str, str], output: str, to: str
) -> str:
    return (
        f'{{ model_name: "{model}" model_version: {version} '
        f'input_map {{ key: "INPUT0" value: "{inputs[0]}" }} '
        f'input_map {{ key: "INPUT1" value: "{inputs[1]}" }} '
        f'output_map {{ key: "{output}" value: "{to}" }} }}'
    )


def ensemble_config(steps: list[str]) -> str:
    return (
        'platform: "ensemble"\n'
        + IO
        + "ensemble_scheduling { step [ "
        + ", ".join(steps)
        + " ] }\n"
    )


# OUTPUT0 = IN0 + 2 * IN1 by the latest version (2); OUTPUT1 = IN0 - 2 * IN1 by
# version 1.
PINNED = ensemble_config(
    [
        step(-1, "simple", ("INPUT0", "INPUT1"), "OUTPUT0", "sum"),
        step(1, "simple", ("INPUT0", "INPUT1"), "OUTPUT1", "difference"),
        step(-1, "simple", ("sum", "INPUT1"), "OUTPUT0", "OUTPUT0"),
        step(1, "simple", ("difference", "INPUT1"), "OUTPUT1", "OUTPUT1"),
    ]
)
# The second step's model answers OUTPUT0 only: OUTPUT0 = IN0 + (IN1 - IN1).
PARTIAL = ensemble_config(
    [
        step(-1, "simple", ("INPUT1", "INPUT1"), "OUTPUT1", "zero"),
        step(-1, "partial", ("INPUT0", "zero"), "OUTPUT0", "OUTPUT0").replace(
            "} }", '} output_map { key: "OUTPUT1" value: "OUTPUT1" } }'
        ),
    ]
)


def write_repo(repo: Path) -> None:
    models = {
        "simple": ('backend: "python"\nversion_policy: { all { } }\n' + IO, True, 2),
        "partial": ('backend: "python"\n' + IO, False, 1),
    }
    for name, (config, with_difference, versions) in models.items():
        (repo / name).mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        source = ADD_SUB_PY.replace("WITH_DIFFERENCE", str(with_difference))
        for version in range(1, versions + 1):
            (repo / name / str(version)).mkdir()
            (repo / name / str(version) / "model.py").write_text(source)
    for name, config in (("pinned", PINNED), ("partial_ensemble", PARTIAL)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, RunningServer]]:
    repo = tmp_path_factory.mktemp("qa_simple_ensemble") / "repo"
    write_repo(repo)
    with ExitStack() as stack:
        running = {"tritonx": stack.enter_context(run_server(repo))}
        if reference_command() is not None:
            running["reference"] = stack.enter_context(run_reference([repo]))
        yield running


def inputs(batch: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16)
    return a, np.full((batch, 16), 3, dtype=np.int32)


def http_inputs(a: np.ndarray, b: np.ndarray) -> list[httpclient.InferInput]:
    tensors = []
    for name, value in (("INPUT0", a), ("INPUT1", b)):
        tensor = httpclient.InferInput(name, list(value.shape), "INT32")
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return tensors


def successes(server: RunningServer, model: str) -> dict[str, int]:
    """Successful requests per version of ``model``."""
    client = httpclient.InferenceServerClient(server.http_url)
    stats = client.get_inference_statistics(model)["model_stats"]
    return {s["version"]: s["inference_stats"]["success"]["count"] for s in stats}


def run_pinned(server: RunningServer, outputs: tuple[str, ...]) -> dict[str, Any]:
    """Batches of 1 and 8 to the pinned ensemble asking for ``outputs``: the
    answers and what each version of the composing model ran meanwhile."""
    client = httpclient.InferenceServerClient(server.http_url)
    before = successes(server, "simple")
    ensemble_before = successes(server, "pinned")["1"]
    seen: dict[str, Any] = {}
    for batch in (1, 8):
        wanted = [httpclient.InferRequestedOutput(o) for o in outputs]
        result = client.infer("pinned", http_inputs(*inputs(batch)), outputs=wanted)
        seen[f"batch {batch}"] = {
            o["name"]: result.as_numpy(o["name"]).tolist()
            for o in result.get_response()["outputs"]
        }
    # Each request runs two steps on the latest version; with OUTPUT1 asked for,
    # two on version 1 as well.
    latest = before["2"] + 4
    wait_until(
        lambda: (
            successes(server, "simple")["2"] == latest
            and successes(server, "pinned")["1"] == ensemble_before + 2
        ),
        "the statistics of the requests",
    )
    if "OUTPUT1" in outputs:
        wait_until(
            lambda: successes(server, "simple")["1"] == before["1"] + 4,
            "version 1's statistics",
        )
    after = successes(server, "simple")
    seen["ran"] = {v: after[v] - before[v] for v in sorted(after)}
    return seen


def compare(servers: dict[str, RunningServer], observe: Any) -> dict[str, Any]:
    seen = {kind: observe(server) for kind, server in servers.items()}
    if "reference" in seen:
        assert seen["tritonx"] == seen["reference"]
    return seen["tritonx"]


def test_steps_pinned_to_versions(servers: dict[str, RunningServer]) -> None:
    seen = compare(servers, lambda s: run_pinned(s, ("OUTPUT0", "OUTPUT1")))
    for batch in (1, 8):
        a, b = inputs(batch)
        assert seen[f"batch {batch}"] == {
            "OUTPUT0": (a + 2 * b).tolist(),
            "OUTPUT1": (a - 2 * b).tolist(),
        }
    assert seen["ran"] == {"1": 4, "2": 4}


def test_only_the_steps_of_the_requested_output_run(
    servers: dict[str, RunningServer],
) -> None:
    seen = compare(servers, lambda s: run_pinned(s, ("OUTPUT0",)))
    for batch in (1, 8):
        a, b = inputs(batch)
        assert seen[f"batch {batch}"] == {"OUTPUT0": (a + 2 * b).tolist()}
    assert seen["ran"] == {"1": 0, "2": 4}


def grpc_inputs() -> list[grpcclient.InferInput]:
    a, b = inputs(1)
    tensors = []
    for name, value in (("INPUT0", a), ("INPUT1", b)):
        tensor = grpcclient.InferInput(name, list(value.shape), "INT32")
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return tensors


def stream_flags(server: RunningServer) -> list[Any]:
    """Three requests of one sequence streamed to the pinned ensemble: the
    sequence flags on each response, in order."""
    answers: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    tensors = grpc_inputs()
    seen = []
    try:
        for i in range(3):
            client.async_stream_infer(
                "pinned",
                tensors,
                outputs=[grpcclient.InferRequestedOutput("OUTPUT0")],
                request_id=f"r{i}",
                sequence_id=42,
                sequence_start=i == 0,
                sequence_end=i == 2,
            )
        for _ in range(3):
            result, error = answers.get(timeout=60)
            assert error is None, error
            response = result.get_response()
            params = response.parameters
            values = {
                k: getattr(params[k], params[k].WhichOneof("parameter_choice"))
                for k in sorted(params)
            }
            seen.append((response.id, values))
    finally:
        client.stop_stream()
    return sorted(seen)


def test_sequence_flags_come_back_on_ensemble_responses(
    servers: dict[str, RunningServer],
) -> None:
    seen = compare(servers, stream_flags)
    assert seen == [
        (
            f"r{i}",
            {"sequence_id": 42, "sequence_start": i == 0, "sequence_end": i == 2}
            | {"triton_final_response": True},
        )
        for i in range(3)
    ]


def parameters_of(server: RunningServer, model: str, **sequence: Any) -> dict[str, Any]:
    """The parameters of ``model``'s response to one gRPC request (with the
    sequence fields ``sequence``)."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    result = client.infer(model, grpc_inputs(), **sequence)
    params = result.get_response().parameters
    return {
        k: getattr(params[k], params[k].WhichOneof("parameter_choice"))
        for k in sorted(params)
    }


def http_parameters(server: RunningServer, model: str) -> Any:
    client = httpclient.InferenceServerClient(server.http_url)
    result = client.infer(model, http_inputs(*inputs(1)))
    return result.get_response().get("parameters")


NO_SEQUENCE = {"sequence_id": 0, "sequence_start": False, "sequence_end": False}


def test_every_ensemble_response_has_sequence_parameters(
    servers: dict[str, RunningServer],
) -> None:
    seen = compare(
        servers,
        lambda s: {
            "grpc": parameters_of(s, "pinned"),
            "http": http_parameters(s, "pinned"),
        },
    )
    assert seen == {"grpc": NO_SEQUENCE, "http": NO_SEQUENCE}


def test_a_string_sequence_id_comes_back_as_a_string(
    servers: dict[str, RunningServer],
) -> None:
    seen = compare(
        servers,
        lambda s: parameters_of(
            s, "pinned", sequence_id="abc", sequence_start=True, sequence_end=False
        ),
    )
    assert seen == {"sequence_id": "abc", "sequence_start": True, "sequence_end": False}


def test_composing_models_answer_as_they_did(
    servers: dict[str, RunningServer],
) -> None:
    seen = compare(servers, lambda s: parameters_of(s, "simple", sequence_id=42))
    assert seen == {}


def partial_answer(server: RunningServer) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    wanted = [grpcclient.InferRequestedOutput(o) for o in ("OUTPUT0", "OUTPUT1")]
    result = client.infer("partial_ensemble", grpc_inputs(), outputs=wanted)
    return {
        o.name: result.as_numpy(o.name).tolist() for o in result.get_response().outputs
    }


def test_an_output_a_step_leaves_out_is_left_out(
    servers: dict[str, RunningServer],
) -> None:
    seen = compare(servers, partial_answer)
    a, _ = inputs(1)
    assert seen == {"OUTPUT0": a.tolist()}
