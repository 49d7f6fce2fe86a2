"""The rate limiter's start-up checks and its scheduling of batches and sequences,
after Triton's L0_rate_limiter QA, as differential tests against Triton 2.51.

Two models share resource R1 (one needs 4 copies, the other 2, and also 2 of the
global R2). The server refuses to start when a resource has fewer copies than some
instance needs: too few given, or given for another device only (then the device
has none); a resource both global and per-device across models is refused too.
Without counts on the command line, the server takes what the models need. With
enough, a dynamic batcher under the limiter still forms full batches and a
sequence keeps its state.

The QA's priority runs compare throughput ratios under load; they depend on
timing, so they are not ported.
"""

from __future__ import annotations

import concurrent.futures
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, differential, run_either, run_server
from testmodels import ECHO_MODEL, write_model

HEAD = """
name: "{name}"
backend: "python"
max_batch_size: {batch}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1
  rate_limiter {{ resources [ {resources} ] priority: {priority} }}
}} ]
"""
FOUR = '{ name: "R1" count: 4 }'
TWO = '{ name: "R1" count: 2 }, { name: "R2" global: true count: 2 }'
# Only full batches of 4 form within the minute.
BATCHING = """
dynamic_batching {
  preferred_batch_size: [ 4 ]
  max_queue_delay_microseconds: 60000000
}
"""
SEQUENCE = """
sequence_batching { max_sequence_idle_microseconds: 600000000 }
"""

# OUTPUT0: the running sum of the sequence's INPUT0 values.
ACCUMULATE = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            key = request.correlation_id()
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            self.sums[key] = self.sums.get(key, 0.0) + float(data.sum())
            out = np.array([self.sums[key]], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out)]))
        return responses
"""


def config(name: str, resources: str, batch: int = 4, priority: int = 1) -> str:
    return HEAD.format(name=name, batch=batch, resources=resources, priority=priority)


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qa_rate_limiter")
    pair = root / "pair"
    write_model(pair, "four", config("four", FOUR) + BATCHING, ECHO_MODEL)
    write_model(pair, "two", config("two", TWO, priority=2), ECHO_MODEL)
    write_model(
        pair,
        "sequence",
        config("sequence", '{ name: "R1" count: 1 }', batch=0) + SEQUENCE,
        ACCUMULATE,
    )
    # R2 per device here, global in "two".
    conflict = root / "conflict"
    write_model(conflict, "four", config("four", FOUR), ECHO_MODEL)
    write_model(conflict, "two", config("two", TWO, priority=2), ECHO_MODEL)
    write_model(
        conflict, "local", config("local", '{ name: "R2" count: 2 }'), ECHO_MODEL
    )
    return {"pair": pair, "conflict": conflict}


# The resource errors, without what a log line adds around them.
RESOURCE_ERROR = re.compile(
    r'Resource (?:count for "\w+" is limited to \d+ [^,]*, the minimum required '
    r'count is \d+|"\w+" is present as both global and device-specific resource '
    r"in the model configuration\.)"
)


def start_failure(kind: str, repo: Path, *args: str) -> dict[str, Any]:
    """Whether the server started, and the resource errors its log gives."""
    if kind == "reference":
        try:
            with run_either(kind, repo, *args):
                return {"started": True}
        except RuntimeError as error:
            log = str(error)
            started = False
    else:
        with run_server(repo, *args, expect_ready=False) as server:
            server.process.wait(timeout=60)
            log = server.log_text()
            started = server.process.returncode == 0
    return {"started": started, "errors": sorted(set(RESOURCE_ERROR.findall(log)))}


LIMITED = "which will prevent scheduling of one or more model instances"


@pytest.mark.parametrize(
    ("case", "args", "expected"),
    [
        (
            "too-few",
            ["--rate-limit-resource=R1:3", "--rate-limit-resource=R2:2"],
            f'Resource count for "R1" is limited to 3 {LIMITED}, the minimum '
            "required count is 4",
        ),
        (
            "other-device",
            ["--rate-limit-resource=R1:10:10", "--rate-limit-resource=R2:2"],
            f'Resource count for "R1" is limited to 0 {LIMITED}, the minimum '
            "required count is 4",
        ),
        (
            "global-and-device",
            [],
            'Resource "R2" is present as both global and device-specific resource '
            "in the model configuration.",
        ),
    ],
)
def test_start_refused(
    repos: dict[str, Path], case: str, args: list[str], expected: str
) -> None:
    repo = repos["conflict" if case == "global-and-device" else "pair"]
    seen = differential(
        lambda kind: start_failure(kind, repo, "--rate-limit=execution_count", *args)
    )
    assert seen["started"] is False
    assert any(expected in line for line in seen["errors"]), seen["errors"]


def send(url: str, model: str, value: float, **options: Any) -> float:
    client = httpclient.InferenceServerClient(url, network_timeout=120)
    tensor = httpclient.InferInput(
        "INPUT0", [1] if model == "sequence" else [1, 1], "FP32"
    )
    tensor.set_data_from_numpy(np.full(tensor.shape(), value, np.float32))
    try:
        return float(
            client.infer(model, [tensor], **options).as_numpy("OUTPUT0").ravel()[0]
        )
    finally:
        client.close()


def batch_stats(server: RunningServer, model: str) -> dict[int, int]:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    return {
        int(b["batch_size"]): int(b["compute_infer"]["count"])
        for b in stats.get("batch_stats", [])
    }


def serve(server: RunningServer) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    client = httpclient.InferenceServerClient(server.http_url)
    seen["ready"] = [client.is_model_ready(m) for m in ("four", "two", "sequence")]
    client.close()
    # Eight requests at once: two full batches, whatever order they come in.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda v: send(server.http_url, "four", v), range(8)))
    seen["batched outputs"] = values
    wait_until(lambda: sum(batch_stats(server, "four").values()) >= 2, "2 batches")
    seen["batches"] = batch_stats(server, "four")
    sums = []
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0]):
        options = {"sequence_id": 7, "sequence_start": step == 0}
        options["sequence_end"] = step == 4
        sums.append(send(server.http_url, "sequence", value, **options))
    seen["sequence sums"] = sums
    seen["two"] = send(server.http_url, "two", 9.0)
    return seen


@pytest.mark.parametrize(
    "args",
    [[], ["--rate-limit-resource=R1:6", "--rate-limit-resource=R2:2"]],
    ids=["from-models", "given"],
)
def test_limited_server_batches_and_keeps_sequences(
    repos: dict[str, Path], args: list[str]
) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        with run_either(
            kind, repos["pair"], "--rate-limit=execution_count", *args
        ) as server:
            return serve(server)

    seen = differential(scenario)
    assert seen["ready"] == [True, True, True]
    assert seen["batched outputs"] == [float(v) for v in range(8)]
    assert seen["batches"] == {4: 2}
    assert seen["sequence sums"] == [1.0, 3.0, 6.0, 10.0, 15.0]
    assert seen["two"] == 9.0
