"""tritonx.api custom metrics (Triton's MetricFamily / Metric / MetricKind) in the
server's /metrics text, and Model.batch_properties / transaction_properties."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cloudutil import write_model
from testmodels import ADD_SUB, ADD_SUB_PY, ECHO_MODEL, REPEAT_CONFIG, REPEAT_MODEL

import tritonx.api as api

BATCHING = """
name: "batching"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api.Server]:
    repo = tmp_path_factory.mktemp("metrics") / "repo"
    write_model(repo, "add_sub", ADD_SUB, ADD_SUB_PY)
    write_model(repo, "batching", BATCHING, ECHO_MODEL)
    write_model(repo, "repeat", REPEAT_CONFIG, REPEAT_MODEL)
    running = api.Server(model_repository=str(repo)).start(wait_until_ready=True)
    yield running
    running.stop()


def _name(prefix: str) -> str:
    # The table is process-wide: each test its own family names.
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_counter_and_gauge_in_the_metrics_text(server: api.Server) -> None:
    counter_name, gauge_name = _name("app_requests"), _name("app_queue")
    counter = api.Metric(
        api.MetricFamily(api.MetricKind.COUNTER, counter_name, "requests seen"),
        {"route": "a"},
    )
    gauge = api.Metric(
        api.MetricFamily(api.MetricKind.GAUGE, gauge_name, "queue depth"), {}
    )
    counter.increment(2.5)
    counter.increment(2.5)
    gauge.set_value(7)
    gauge.increment(-2)
    assert counter.value == 5.0 and gauge.value == 5.0
    assert counter.kind == api.MetricKind.COUNTER
    text = server.metrics()
    assert f"# HELP {counter_name} requests seen" in text
    assert f"# TYPE {counter_name} counter" in text
    assert f'{counter_name}{{route="a"}} 5' in text
    assert f"# TYPE {gauge_name} gauge" in text
    assert f"{gauge_name} 5" in text


def test_metric_rules_are_invalid_arguments() -> None:
    name = _name("app_rules")
    family = api.MetricFamily(api.MetricKind.COUNTER, name, "rules")
    counter = api.Metric(family, {"k": "v"})
    with pytest.raises(api.InvalidArgumentError, match="negative"):
        counter.increment(-1)
    with pytest.raises(api.InvalidArgumentError, match="only supported by gauges"):
        counter.set_value(3)
    with pytest.raises(api.InvalidArgumentError, match="different kind"):
        api.MetricFamily(api.MetricKind.GAUGE, name, "rules")
    # The same family again shares its series.
    again = api.MetricFamily(api.MetricKind.COUNTER, name, "rules")
    assert again.name == name
    histogram = api.MetricFamily(api.MetricKind.HISTOGRAM, _name("app_h"), "sizes")
    with pytest.raises(api.InvalidArgumentError, match="buckets"):
        api.Metric(histogram)
    sizes = api.Metric(histogram, buckets=[1.0, 10.0])
    sizes.observe(3.0)
    with pytest.raises(api.InvalidArgumentError, match="histograms"):
        _ = sizes.value


def test_batch_and_transaction_properties(server: api.Server) -> None:
    add_sub, batching, repeat = (
        server.model(n) for n in ("add_sub", "batching", "repeat")
    )
    assert add_sub.batch_properties() == api.ModelBatchFlag.UNKNOWN
    assert batching.batch_properties() == api.ModelBatchFlag.FIRST_DIM
    assert add_sub.transaction_properties() == api.ModelTxnPropertyFlag.ONE_TO_ONE
    assert repeat.transaction_properties() == api.ModelTxnPropertyFlag.DECOUPLED
    with pytest.raises(api.NotFoundError):
        server.model("missing").batch_properties()
