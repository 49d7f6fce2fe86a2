"""pb_utils.MetricFamily / Metric rules of Triton 2.51, end to end in both execution
modes (and against the real Triton when TRITONX_REFERENCE_CMD is set): duplicate
label sets share one series, a family of a taken name keeps the first description,
histogram bounds must strictly increase and print as prometheus-cpp prints them, a
Metric of a deleted family refuses every operation, and a scrape made from inside
execute sees every operation the model made before it (a stub's batched updates
too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from serverutil import (
    infer_json,
    reference_command,
    run_either,
    skip_if_the_reference_aborted,
)

CONFIG = """
name: "probe"
backend: "python"
max_batch_size: 0
input [ { name: "URL", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_STRING, dims: [ 1 ] } ]
"""

MODEL = """
import json
import urllib.request

import numpy as np
import triton_python_backend_utils as pb_utils


def refused(call):
    try:
        call()
    except pb_utils.TritonModelException as exc:
        return str(exc)
    return None


class TritonPythonModel:
    def execute(self, requests):
        url = pb_utils.get_input_tensor_by_name(requests[0], "URL").as_numpy()
        url = url.reshape(-1)[0].decode()
        F = pb_utils.MetricFamily  # (not at import: Triton's auto-complete lacks it)
        seen = {}
        dup = F("probe_dup", "duplicate labels", F.COUNTER)
        first, second = (dup.Metric(labels={"k": "v"}) for _ in range(2))
        first.increment(3)
        seen["dup"] = [first.value(), second.value()]
        empty = [dup.Metric(labels={}), dup.Metric()]
        empty[1].increment(2)
        seen["dup_empty"] = empty[0].value()

        described = F("probe_desc", "first description", F.COUNTER)
        again = F("probe_desc", "second description", F.COUNTER)
        kept = again.Metric(labels={"k": "v"})
        kept.increment(1)
        del described
        seen["other_kind"] = refused(lambda: F("probe_desc", "x", F.GAUGE)) is not None

        hist = F("probe_hist", "histogram", F.HISTOGRAM)
        seen["unsorted"] = refused(lambda: hist.Metric(buckets=[2.5, 0.1, 1.0]))
        seen["repeated"] = refused(lambda: hist.Metric(buckets=[1, 1, 2]))
        seen["no_buckets"] = refused(lambda: hist.Metric(labels={})) is not None
        seen["empty_buckets"] = refused(
            lambda: hist.Metric(labels={"e": "1"}, buckets=[]).observe(4.0)
        )
        sizes = hist.Metric(labels={"k": "v"}, buckets=[0.1, 1.0, 2.5, 10])
        for value in (0.05, 1.5, 6.0, 1.0):
            sizes.observe(value)

        gone = F("probe_gone", "deleted family", F.GAUGE)
        orphan = gone.Metric(labels={"k": "v"})
        orphan.set(4)
        del gone
        seen["orphan"] = [
            refused(lambda: orphan.set(1)),
            refused(lambda: orphan.increment(1)),
            refused(orphan.value),
        ]

        with urllib.request.urlopen(url, timeout=30) as reply:
            text = reply.read().decode()
        seen["scrape"] = sorted(
            line for line in text.splitlines() if "probe_" in line
        )
        out = pb_utils.Tensor("OUT", np.array([json.dumps(seen)], dtype=object))
        return [pb_utils.InferenceResponse([out])]
"""

GONE = "Invalid metric operation as the corresponding 'MetricFamily' has been deleted."


def _one_model(
    root: Path, name: str, config: str, model: str, kind: str, mode: str
) -> tuple[Path, list[str]]:
    """A repository holding one python model, and the server arguments that run it
    in ``mode`` (none for the reference, whose models always run in stubs)."""
    repo = root / f"{name}-{kind}-{mode}"
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    (repo / name / "1" / "model.py").write_text(model)
    args = (
        []
        if kind == "reference"
        else [f"--backend-config=python,execution-mode={mode}"]
    )
    return repo, args


def _probe(tmp_path: Path, kind: str, mode: str) -> dict[str, Any]:
    repo, args = _one_model(tmp_path, "probe", CONFIG, MODEL, kind, mode)
    with run_either(kind, repo, *args) as server:
        url = {"name": "URL", "shape": [1], "datatype": "BYTES"}
        try:
            status, body = infer_json(
                server, "probe", [{**url, "data": [server.metrics_url]}]
            )
        except OSError:
            if kind == "reference":
                skip_if_the_reference_aborted(server)
            raise
        assert status == 200, body
        outputs: Any = body["outputs"]
        seen: dict[str, Any] = json.loads(outputs[0]["data"][0])
    # The texts of refusals other than the lifetime error are tritonx's own.
    for key in ("unsorted", "repeated"):
        seen[key] = seen[key] is not None
    seen["orphan"] = [text is not None and GONE in text for text in seen["orphan"]]
    return seen


EXPECTED_SCRAPE = sorted(
    [
        "# HELP probe_dup duplicate labels",
        "# TYPE probe_dup counter",
        'probe_dup{k="v"} 3',
        "probe_dup 2",
        "# HELP probe_desc first description",
        "# TYPE probe_desc counter",
        'probe_desc{k="v"} 1',
        "# HELP probe_hist histogram",
        "# TYPE probe_hist histogram",
        'probe_hist_count{e="1"} 1',
        'probe_hist_sum{e="1"} 4',
        'probe_hist_bucket{e="1",le="+Inf"} 1',
        'probe_hist_count{k="v"} 4',
        # prometheus-cpp's 16 significant digits, not Python's shortest "8.55"
        'probe_hist_sum{k="v"} 8.550000000000001',
        'probe_hist_bucket{k="v",le="0.1"} 1',
        'probe_hist_bucket{k="v",le="1"} 2',
        'probe_hist_bucket{k="v",le="2.5"} 3',
        'probe_hist_bucket{k="v",le="10"} 4',
        'probe_hist_bucket{k="v",le="+Inf"} 4',
    ]
)


@pytest.mark.parametrize("mode", ["in-process", "process"])
def test_custom_metric_rules(tmp_path: Path, mode: str) -> None:
    seen = _probe(tmp_path, "tritonx", mode)
    assert seen == {
        "dup": [3, 3],
        "dup_empty": 2,
        "other_kind": True,
        "unsorted": True,
        "repeated": True,
        "no_buckets": True,
        "empty_buckets": None,
        "orphan": [True, True, True],
        "scrape": EXPECTED_SCRAPE,
    }


@pytest.mark.skipif(reference_command() is None, reason="no reference command")
def test_custom_metric_rules_match_triton(tmp_path: Path) -> None:
    assert _probe(tmp_path, "tritonx", "in-process") == _probe(
        tmp_path, "reference", ""
    )


# Two instances (in process mode: two stub processes) whose Metric objects share
# their series, as every instance of a model does for the same labels. Each request
# counts itself on a counter and on a gauge, and answers the values it then reads.
SHARED_CONFIG = """
name: "shared"
backend: "python"
max_batch_size: 0
input [ { name: "SET", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_STRING, dims: [ 1 ] } ]
instance_group [ { count: 2, kind: KIND_CPU } ]
"""

SHARED_MODEL = """
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        F = pb_utils.MetricFamily
        # (A Metric outlives its family object only as an error.)
        self.families = [
            F("shared_requests", "requests", F.COUNTER),
            F("shared_level", "level", F.GAUGE),
        ]
        self.counter, self.gauge = (f.Metric({"m": "s"}) for f in self.families)

    def execute(self, requests):
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "SET").as_numpy()[0]
            time.sleep(0.2)  # keeps this instance busy: the next request goes to the other
            if value >= 0:
                self.gauge.set(float(value))
            self.counter.increment(1)
            self.gauge.increment(1)
            seen = [self.counter.value(), self.gauge.value()]
            out = np.array([json.dumps(seen).encode()], dtype=object)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
        return responses
"""


def _shared_series(tmp_path: Path, kind: str, mode: str) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from test_metrics import labels, samples, scrape  # tests/test_metrics.py

    repo, args = _one_model(tmp_path, "shared", SHARED_CONFIG, SHARED_MODEL, kind, mode)

    def infer(server: Any, value: float) -> list[float]:
        data = {"name": "SET", "shape": [1], "datatype": "FP32", "data": [value]}
        status, body = infer_json(server, "shared", [data])
        assert status == 200, body
        return json.loads(body["outputs"][0]["data"][0])

    seen: dict[str, Any] = {}
    with run_either(kind, repo, *args) as server:
        with ThreadPoolExecutor(2) as pool:  # three pairs at once: both instances
            for _ in range(3):
                list(pool.map(lambda _: infer(server, -1), range(2)))
        seen["after 7"] = infer(server, -1)
        seen["set 10, then 1"] = infer(server, 10)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: infer(server, -1), range(2)))
        seen["after 2 more"] = infer(server, -1)
        series = samples(scrape(server.metrics_url))
        seen["scraped"] = [
            series[(name, labels(m="s"))]
            for name in ("shared_requests", "shared_level")
        ]
    return seen


@pytest.mark.parametrize("mode", ["in-process", "process"])
def test_instances_share_their_series(tmp_path: Path, mode: str) -> None:
    """What one instance reads is the series' value: every instance's updates (in
    Triton, value() asks the server), and a gauge's increments add to what another
    instance set."""
    seen = _shared_series(tmp_path, "tritonx", mode)
    assert seen == {
        "after 7": [7, 7],
        "set 10, then 1": [8, 11],
        "after 2 more": [11, 14],
        "scraped": [11, 14],
    }
    if reference_command() is not None:
        assert _shared_series(tmp_path, "reference", "") == seen
