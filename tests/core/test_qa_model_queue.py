"""Queue policies of the dynamic batcher over the wire, after Triton's
L0_model_queue and L0_priority QA, as differential tests against Triton 2.51:
a full priority queue's refusal (HTTP status, gRPC code, text, failure
metric), a request's own timeout, and the order priorities give a batch.

Triton's QA times responses against a model that sleeps. Here a batch only
forms once its requests fill the preferred size (the queue delay is a minute),
so which requests wait, which are refused and how the batch is ordered depend
on the order the test sends them in, which it fixes by waiting for each to be
counted as pending before sending the next.
"""

from __future__ import annotations

import concurrent.futures
import re
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, differential, run_either
from testmodels import write_model
from tritonclient.utils import InferenceServerException

# OUTPUT0 = INPUT0; POSITION = where the request stood in the execution's list
# (the batcher's order), one value per batch row.
MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for position, request in enumerate(requests):
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            where = np.full((data.shape[0], 1), position, np.int32)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", data),
                pb_utils.Tensor("POSITION", where),
            ]))
        return responses
"""


def config(name: str, batching: str) -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [
  {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "POSITION" data_type: TYPE_INT32 dims: [ 1 ] }}
]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
dynamic_batching {{
  preferred_batch_size: [ 8 ]
  max_queue_delay_microseconds: 60000000
  {batching}
}}
"""


# Level 2 (the default) holds at most 2 requests; level 1 has no bound.
PRIORITY = """
  priority_levels: 2
  default_priority_level: 2
  priority_queue_policy {
    key: 2
    value: { max_queue_size: 2 }
  }
"""
# A request may shorten its timeout (a minute by default); expired, it is refused.
TIMEOUT = """
  default_queue_policy {
    timeout_action: REJECT
    allow_timeout_override: true
    default_timeout_microseconds: 60000000
  }
"""


def write_repo(repo: Path) -> None:
    write_model(repo, "priority", config("priority", PRIORITY), MODEL)
    write_model(repo, "timeout", config("timeout", TIMEOUT), MODEL)


def send_http(
    url: str, model: str, batch: int, value: float, **options: Any
) -> dict[str, Any]:
    """One HTTP request of ``batch`` rows of ``value``: the rows' positions, or
    the refusal's status and text."""
    client = httpclient.InferenceServerClient(url, network_timeout=120)
    tensor = httpclient.InferInput("INPUT0", [batch, 1], "FP32")
    tensor.set_data_from_numpy(np.full((batch, 1), value, np.float32))
    try:
        result = client.infer(model, [tensor], **options)
    except InferenceServerException as error:
        return {"status": error.status(), "message": error.message()}
    finally:
        client.close()
    return {
        "OUTPUT0": result.as_numpy("OUTPUT0").ravel().tolist(),
        "POSITION": result.as_numpy("POSITION").ravel().tolist(),
    }


def send_grpc(url: str, model: str, batch: int, **options: Any) -> dict[str, Any]:
    """The same over gRPC; only refusals are expected here."""
    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput("INPUT0", [batch, 1], "FP32")
    tensor.set_data_from_numpy(np.zeros((batch, 1), np.float32))
    try:
        client.infer(model, [tensor], client_timeout=120, **options)
        return {"answered": True}
    except InferenceServerException as error:
        return {"status": error.status(), "message": error.message()}
    finally:
        client.close()


def failures(server: RunningServer, model: str) -> list[str]:
    """The model's request-failure metric lines."""
    import urllib.request

    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    return sorted(
        re.findall(rf'^nv_inference_request_failure{{model="{model}".*$', text, re.M)
    )


def _read_counts(server: RunningServer, model: str) -> dict[str, int]:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats = client.get_inference_statistics(model, "1")["model_stats"][0]
    finally:
        client.close()
    counted = {
        f"{name}": stats["inference_stats"][name]["count"]
        for name in ("success", "fail", "queue")
    }
    counted["inference_count"] = stats["inference_count"]
    counted["execution_count"] = stats["execution_count"]
    return counted


def counts(server: RunningServer, model: str) -> dict[str, int]:
    """The model's statistics counts once its one execution is recorded and they
    stopped moving: what a refusal is counted as, if at all. (Triton 2.51 records
    an execution's statistics after its responses: CI read all zeros.)"""
    seen: list[dict[str, int]] = []

    def settled() -> bool:
        seen.append(_read_counts(server, model))
        # (three equal reads in a row, 20 ms apart)
        last = seen[-3:]
        return (
            len(last) == 3
            and last[0]["execution_count"] >= 1
            and all(read == last[0] for read in last)
        )

    wait_until(settled, f"{model}'s statistics to settle")
    return seen[-1]


def queue(
    server: RunningServer,
    pool: concurrent.futures.ThreadPoolExecutor,
    model: str,
    batch: int,
    value: float,
    **options: Any,
) -> concurrent.futures.Future[dict[str, Any]]:
    """Send one request and return once the server counts it as pending."""
    before = server.pending_requests(model)
    future = pool.submit(send_http, server.http_url, model, batch, value, **options)
    wait_until(
        lambda: server.pending_requests(model) == before + 1,
        f"a request of {model} to be queued",
    )
    return future


def test_full_priority_level_refuses_and_priority_orders_the_batch(
    tmp_path: Path,
) -> None:
    write_repo(tmp_path)

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, tmp_path) as server:
            url = server.http_url
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                first = queue(server, pool, "priority", 3, 1.0)
                second = queue(server, pool, "priority", 3, 2.0)
                # Level 2 is full: refused at once, on either protocol.
                full_http = send_http(url, "priority", 1, 3.0)
                full_grpc = send_grpc(server.grpc_url, "priority", 1)
                explicit = send_http(url, "priority", 1, 3.0, priority=2)
                # Level 1 has room; its 2 rows fill the batch of 8 and go first.
                urgent = send_http(url, "priority", 2, 4.0, priority=1)
                return {
                    "full_http": full_http,
                    "full_grpc": full_grpc,
                    "explicit_level_2": explicit,
                    "urgent": urgent,
                    "first": first.result(timeout=120),
                    "second": second.result(timeout=120),
                    "failures": failures(server, "priority"),
                    "counts": counts(server, "priority"),
                }

    seen = differential(scenario)
    assert seen["full_http"] == {
        "status": "503",
        "message": "[request id: <id_unknown>] Exceeds maximum queue size",
    }
    assert seen["failures"][-1].endswith(" 0")  # REJECTED: not counted
    assert seen["urgent"] == {"OUTPUT0": [4.0, 4.0], "POSITION": [0, 0]}
    assert seen["first"]["POSITION"] == [1, 1, 1]
    assert seen["second"]["POSITION"] == [2, 2, 2]


def test_expired_request_is_refused_and_the_rest_batch(tmp_path: Path) -> None:
    write_repo(tmp_path)

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, tmp_path) as server:
            url = server.http_url
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                # A microsecond: expired before the batcher can take it, and
                # refused although no batch forms (the others wait a minute).
                expired = send_http(url, "timeout", 2, 1.0, timeout=1)
                # Triton 2.51 may answer the refusal before it takes the request
                # off its pending count: counting the next one from a count that
                # then drops would never see it arrive (CI on 8d39bb9).
                wait_until(
                    lambda: server.pending_requests("timeout") == 0,
                    "the expired request to leave the queue",
                )
                kept = queue(server, pool, "timeout", 4, 2.0)
                filler = queue(server, pool, "timeout", 2, 3.0)
                # 4 + 2 + 2 rows: the batch of 8 forms.
                last = send_http(url, "timeout", 2, 4.0)
                return {
                    "expired": expired,
                    "kept": kept.result(timeout=120),
                    "filler": filler.result(timeout=120),
                    "last": last,
                    "failures": failures(server, "timeout"),
                    "counts": counts(server, "timeout"),
                }

    seen = differential(scenario)
    assert seen["expired"]["message"] == "Request timeout expired"
    assert seen["kept"]["OUTPUT0"] == [2.0] * 4
    assert seen["last"]["OUTPUT0"] == [4.0] * 2
