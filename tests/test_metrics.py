"""GET /metrics: Triton's families, labels and values read from the core's stats."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serverutil import RunningServer, infer_json, run_server

from tritonx.repository.repository import ModelId
from tritonx.repository.series import MetricSeries

COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
)
GAUGES = (
    "nv_inference_pending_request_count",
    "nv_cpu_utilization",
    "nv_cpu_memory_total_bytes",
    "nv_cpu_memory_used_bytes",
)

# One instance that sleeps per execute: while it runs, the next requests queue up and
# the dynamic batcher hands them over together, so exec_count < inference_count.
BATCH_CONFIG = """
name: "batched"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 2 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 2 ] } ]
dynamic_batching { max_queue_delay_microseconds: 20000 }
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

BATCH_MODEL = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.2)
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            if data[0][0] < -100:
                raise pb_utils.TritonModelException("execution failed")
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            if data[0][0] < 0:
                error = pb_utils.TritonError("negative input")
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                out = pb_utils.Tensor("OUTPUT0", data)
                responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""


class CoreModels:
    """Real core models behind what the collector reads of the ModelManager."""

    def __init__(self, *models: Any) -> None:
        self.models = models
        self.model_load_durations = {(m.name, m.version): 0.25 for m in models}
        self.series = MetricSeries()

    def metric_models(self) -> list[tuple[Any, Any]]:
        return [
            (ModelId("", m.name), SimpleNamespace(core=m, version=m.version))
            for m in self.models
        ]


class SleepyInstance:
    """Echoes INPUT0 after 50 ms; a negative first value fails that request."""

    gather_inputs = False

    def execute(self, requests: list[Any]) -> list[Any]:
        time.sleep(0.05)
        results: list[Any] = []
        for request in requests:
            data = request.inputs[0].as_numpy()
            results.append(
                ValueError("negative") if data[0][0] < 0 else {"OUTPUT0": data.copy()}
            )
        return results


def test_collector_reads_core_accounting() -> None:
    from tritonx import _native as core
    from tritonx.metrics import CpuSampler, TritonCollector, render

    spec = core.ModelSpec(
        "m",
        1,
        8,
        [core.TensorSpec("INPUT0", "FP32", [2])],
        [core.TensorSpec("OUTPUT0", "FP32", [2])],
    )
    config = core.SchedulerConfig(dynamic_batching=True, max_queue_delay_us=20000)
    model = core.Model(spec, config, [SleepyInstance()])

    async def submit_all() -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = []
        for i in range(8):
            value = -1.0 if i == 7 else float(i)
            data = np.full((1, 2), value, dtype=np.float32)
            future = loop.create_future()
            model.submit(
                core.Request(inputs=[("INPUT0", "FP32", [1, 2], data)]),
                core.settle(future),
                loop,
            )
            futures.append(future)
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        results = asyncio.run(submit_all())
        assert sum(isinstance(r, Exception) for r in results) == 1
        collector = TritonCollector(CoreModels(model), cpu=CpuSampler())
        text = render(collector.collect()).decode()
    finally:
        model.stop()
    values = samples(text)
    key = labels(model="m", version="1")
    stats = model.statistics()
    # An error *response* from a model that ran is a success in Triton's accounting.
    assert values[("nv_inference_request_success", key)] == 8
    assert values[("nv_inference_count", key)] == stats["inference_count"] == 8
    assert values[("nv_inference_exec_count", key)] == stats["execution_count"] < 8
    failure = labels(model="m", version="1", reason="BACKEND")
    assert values[("nv_inference_request_failure", failure)] == 0
    assert values[("nv_inference_compute_infer_duration_us", key)] == (
        stats["compute_infer"][1] // 1000
    )
    assert values[("nv_model_load_duration_secs", key)] == 0.25
    assert "# TYPE nv_inference_count counter" in text.splitlines()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Series by (name, labels). prometheus_client's parser renames counter samples
    to <name>_total; the exposition itself is checked line by line elsewhere."""
    return {
        (s.name.removesuffix("_total"), frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


def infer(server: RunningServer, value: float) -> int:
    tensor = {"name": "INPUT0", "shape": [1, 2], "datatype": "FP32"}
    status, _ = infer_json(server, "batched", [{**tensor, "data": [value, value]}])
    return status


def test_metrics_after_batched_inferences(write_model: Callable[..., Path]) -> None:
    repo: Path = write_model("batched", BATCH_CONFIG, BATCH_MODEL)
    n = 8
    with run_server(repo, "--metrics-interval-ms=100") as server:
        text = scrape(server.metrics_url)
        model = labels(model="batched", version="1")
        before = samples(text)
        assert before[("nv_inference_request_success", model)] == 0
        for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
            key = labels(model="batched", version="1", reason=reason)
            assert before[("nv_inference_request_failure", key)] == 0

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            statuses = list(pool.map(lambda i: infer(server, i), range(n)))
        assert statuses == [200] * n
        assert infer(server, -1.0) != 200  # an error response from the model
        assert infer(server, -1000.0) != 200  # a failed execution

        text = scrape(server.metrics_url)
        after = samples(text)
        # Triton's accounting (checked against Triton 2.51): an error response from a
        # model that ran counts as a success and an inference; a failed execution is
        # a BACKEND failure and performs no inference.
        assert after[("nv_inference_request_success", model)] == n + 1
        assert after[("nv_inference_count", model)] == n + 1
        executions = after[("nv_inference_exec_count", model)]
        assert 2 <= executions < n, executions  # batching is visible
        failures = {
            reason: after[
                (
                    "nv_inference_request_failure",
                    labels(model="batched", version="1", reason=reason),
                )
            ]
            for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER")
        }
        assert sum(failures.values()) == 1, failures
        assert failures["BACKEND"] == 1, failures
        # Each request slept in a 0.2 s execute: the cumulative compute time shows it.
        assert after[("nv_inference_compute_infer_duration_us", model)] >= 200_000
        assert after[("nv_inference_request_duration_us", model)] >= 200_000 * n
        assert after[("nv_inference_pending_request_count", model)] == 0
        assert after[("nv_model_load_duration_secs", model)] > 0
        assert 0.0 <= after[("nv_cpu_utilization", frozenset())] <= 1.0
        assert after[("nv_cpu_memory_total_bytes", frozenset())] > 0

        # The statistics extension reads the same core counters.
        import tritonclient.http as httpclient

        stats = httpclient.InferenceServerClient(
            server.http_url
        ).get_inference_statistics("batched")["model_stats"][0]
        assert int(stats["inference_count"]) == n + 1
        assert int(stats["execution_count"]) == executions


def test_exposition_format_matches_triton(example_repo: Path) -> None:
    with run_server(
        example_repo, "--model-control-mode=explicit", "--load-model=identity"
    ) as server:
        text = scrape(server.metrics_url)
    lines = text.splitlines()
    for name in COUNTERS:
        assert f"# TYPE {name} counter" in lines, name
    for name in GAUGES:
        assert f"# TYPE {name} gauge" in lines, name
    for name in COUNTERS:  # prometheus_client's counter suffix must not leak
        assert f"{name}_total" not in text
    assert (
        "# HELP nv_inference_request_success Number of successful inference "
        "requests, all batch sizes" in lines
    )
    assert 'nv_inference_count{model="identity",version="1"} 0' in lines
    assert (
        'nv_inference_request_failure{model="identity",reason="OTHER",version="1"} 0'
        in lines
    )


def test_cpu_metrics_can_be_disabled(example_repo: Path) -> None:
    with run_server(
        example_repo, "--model-control-mode=explicit", "--allow-cpu-metrics=false"
    ) as server:
        text = scrape(server.metrics_url)
    assert "nv_cpu_utilization" not in text


CUSTOM_CONFIG = """
name: "counting"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 2 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 2 ] } ]
"""

CUSTOM_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        # Families are kept: a Metric of a deleted family is unusable (Triton).
        self.family = family = pb_utils.MetricFamily(
            name="requests_seen", description="Requests this model saw",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.seen = family.Metric(labels={"model": args["model_name"]})
        self.sizes = sizes = pb_utils.MetricFamily(
            name="input_sum", description="Sum of each input",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self.sums = sizes.Metric(labels={}, buckets=[1.0, 10.0])
        self.last_family = last = pb_utils.MetricFamily(
            name="last_input", description="First value of the last input",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self.last = last.Metric(labels={"model": args["model_name"]})
        try:  # the name is taken with another kind: refused
            pb_utils.MetricFamily("requests_seen", "Requests this model saw",
                                  pb_utils.MetricFamily.GAUGE)
        except pb_utils.TritonModelException:
            self.last.set(-1)  # replaced by execute; 50 means refused and updated

    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            self.seen.increment(1)
            self.sums.observe(float(data.sum()))
            out = pb_utils.Tensor("OUTPUT0", data)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        if self.last.value() != 0:  # -1: the clash was refused
            self.last.set(float(data[0]))
        return responses
"""


@pytest.mark.parametrize("mode", ["in-process", "process"])
def test_model_defined_metrics_are_exported(
    write_model: Callable[..., Path], mode: str
) -> None:
    """Also from a stub process (EXECUTION_MODE=process), where each update is
    mirrored into the server's families: same names, samples and refusals."""
    repo: Path = write_model("counting", CUSTOM_CONFIG, CUSTOM_MODEL)
    with run_server(repo, f"--backend-config=python,execution-mode={mode}") as server:
        tensor = {"name": "INPUT0", "shape": [2], "datatype": "FP32"}
        for value in (0.25, 2.0, 50.0):
            status, _ = infer_json(server, "counting", [{**tensor, "data": [value, 0]}])
            assert status == 200
        text = scrape(server.metrics_url)
    assert "# TYPE requests_seen counter" in text
    values = samples(text)
    assert values[("requests_seen", labels(model="counting"))] == 3
    assert values[("input_sum_bucket", labels(le="1"))] == 1
    assert values[("input_sum_bucket", labels(le="10"))] == 2
    assert values[("input_sum_bucket", labels(le="+Inf"))] == 3
    assert values[("input_sum_count", frozenset())] == 3
    assert values[("input_sum_sum", frozenset())] == 52.25
    assert values[("last_input", labels(model="counting"))] == 50.0
    assert "# TYPE last_input gauge" in text
