"""NVIDIA perf_analyzer's load modes against tritonx, each checked by what the server
saw or what perf_analyzer wrote, not only by its exit status.

test_perf_analyzer.py runs the plain concurrency mode; here every other way a
Triton user drives a server with it: sequences (gRPC, HTTP, streaming, data files,
request rates, id ranges), an ensemble with its composing models' statistics, a
decoupled model over a stream (periodic concurrency, profile export), request
rates and Poisson arrivals, asynchronous batches, JSON tensors, request
parameters, compression, headers and metrics collection. One server serves every
case; each sequence case has a model of its own whose log shows the sequences
that reached it. The binary comes from $PERF_ANALYZER or PATH.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from perfutil import (
    IDENTITY,
    STRINGS,
    STRINGS_MODEL,
    check_sequences,
    write_sequence_log_model,
)
from serverutil import SHORT_MEASUREMENT, RunningServer, run_perf_analyzer, run_server
from test_perf_analyzer import perf_analyzer
from testmodels import ECHO_MODEL, write_model

pytestmark = pytest.mark.skipif(
    perf_analyzer() is None, reason="perf_analyzer not found ($PERF_ANALYZER or PATH)"
)


# Two identity steps in a row.
ENSEMBLE = """
name: "chain"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ -1 ] } ]
ensemble_scheduling { step [
  { model_name: "identity" model_version: -1
    input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "mid" } },
  { model_name: "identity" model_version: -1
    input_map { key: "INPUT0" value: "mid" } output_map { key: "OUTPUT0" value: "OUT" } }
] }
"""

# Three responses per request, then a FINAL flag alone. The FINAL flag waits a
# moment: perf_analyzer 2.60's periodic-concurrency worker re-checks its free
# context after its send returns, so a request answered whole before that check is
# sent again on the same context, whose final-response flag is never reset; the
# second request's first response then aborts it ("Request received final response
# before request period was reached"). Seen in loaded CI runs against this fast
# model; a request that stays open past the send cannot be reused that way.
DECOUPLED = """
name: "triple"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""
DECOUPLED_MODEL = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            for _ in range(3):
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
            time.sleep(0.2)
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

SEQUENCE_MODELS = (
    "seq_grpc",
    "seq_http",
    "seq_stream",
    "seq_data",
    "seq_rate",
    "seq_ids",
)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, Path]]:
    repo = tmp_path_factory.mktemp("pa_modes")
    write_model(repo, "identity", IDENTITY, ECHO_MODEL)
    write_model(repo, "strings", STRINGS, STRINGS_MODEL)
    write_model(repo, "triple", DECOUPLED, DECOUPLED_MODEL)
    (repo / "chain" / "1").mkdir(parents=True)
    (repo / "chain" / "config.pbtxt").write_text(ENSEMBLE)
    for name in SEQUENCE_MODELS:
        write_sequence_log_model(repo, name, repo / f"{name}.log")
    with run_server(repo) as server:
        yield server, repo


# perf_analyzer's own race when a sequence run stops: it ends a sequence in flight by
# sending its last step early, and may then still send the step that was due; the
# server refuses that one, the sequence being over (Triton 2.51 alike). Seen once in
# a CI run (the model's log: START, END, then the refused request).
_LATE_STEP = re.compile(
    r"Thread \[\d+\] had error: inference request for sequence (\d+) to model "
    r"'[^']+' must specify the START flag on the first request of the sequence"
)


def drive(
    server: RunningServer,
    protocol: str,
    *args: str,
    summary: bool = True,
    late_steps: list[int] | None = None,
    sequences: bool = False,
) -> str:
    """One perf_analyzer run that must succeed without an error; its output. The
    periodic concurrency mode prints no summary (``summary`` False). With
    ``late_steps``, the ids of sequences whose late step was refused (see
    _LATE_STEP) are put there instead of failing the run; the caller checks those
    sequences had ended. ``sequences``: the run drives a sequence model, whose
    requests the caller checks one by one, so a run that failed on perf_analyzer's
    stability loop is not repeated (it may have left sequences open)."""
    binary = perf_analyzer()
    assert binary is not None
    url = server.grpc_url if protocol == "grpc" else server.http_url
    result = run_perf_analyzer(
        [binary, "-u", url, "-i", protocol, *SHORT_MEASUREMENT, *args],
        retry_unstable=not sequences,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert ("Throughput:" in output) == summary, output
    checked = output
    if late_steps is not None:
        late_steps.extend(int(m.group(1)) for m in _LATE_STEP.finditer(output))
        checked = _LATE_STEP.sub("", output)
    assert "error" not in checked.lower(), output
    return output


def logged(repo: Path, model: str) -> list[list[int]]:
    """(correlation id, START, END, INPUT) of each request the model executed."""
    lines = (repo / f"{model}.log").read_text().splitlines()
    return [[int(v) for v in line.split()] for line in lines]


@pytest.mark.parametrize(
    ("model", "protocol", "extra"),
    [
        ("seq_grpc", "grpc", ["--concurrency-range", "2"]),
        ("seq_http", "http", ["--concurrency-range", "2"]),
        ("seq_stream", "grpc", ["--streaming", "--concurrency-range", "2"]),
        (
            "seq_rate",
            "grpc",
            ["--request-rate-range", "100", "--num-of-sequences", "3"],
        ),
    ],
)
def test_sequences_arrive_whole(
    served: tuple[RunningServer, Path], model: str, protocol: str, extra: list[str]
) -> None:
    server, repo = served
    late: list[int] = []
    drive(
        server,
        protocol,
        "-m",
        model,
        "--sequence-length",
        "4",
        *extra,
        late_steps=late,
        sequences=True,
    )
    requests = logged(repo, model)
    ids, most_open = check_sequences([" ".join(map(str, r)) for r in requests])
    assert len(ids) >= 4, ids
    assert most_open >= 2  # several sequences in flight at once
    # A late step was refused only after its sequence had run whole.
    ended = {corrid for corrid, _, end, _ in requests if end}
    assert set(late) <= ended, (late, requests[-8:])


def test_sequence_data_file_steps_in_order(served: tuple[RunningServer, Path]) -> None:
    server, repo = served
    data = repo / "steps.json"
    data.write_text(json.dumps({"data": [{"INPUT": [v]} for v in (7, 8, 9)]}))
    drive(server, "grpc", "-m", "seq_data", "--input-data", str(data), sequences=True)
    steps: dict[int, list[int]] = {}
    cut_short = []
    for corrid, start, end, value in logged(repo, "seq_data"):
        if start:
            steps[corrid] = []
        steps[corrid].append(value)
        if end:
            seen = steps.pop(corrid)
            if seen != [7, 8, 9]:
                cut_short.append(seen)
    assert not steps
    # When the run ends, perf_analyzer ends the sequence in flight (one, at
    # concurrency 1) by sending the last step early, as it does against Triton 2.51.
    assert cut_short in ([], [[7, 9]]), cut_short


def test_sequence_id_range(served: tuple[RunningServer, Path]) -> None:
    server, repo = served
    drive(
        server,
        "grpc",
        "-m",
        "seq_ids",
        "--sequence-length",
        "3",
        "--sequence-id-range",
        "100:110",
        "--serial-sequences",
        "--concurrency-range",
        "2",
        sequences=True,
    )
    ids, _ = check_sequences([" ".join(map(str, r)) for r in logged(repo, "seq_ids")])
    assert ids and set(ids) <= set(range(100, 110)), ids


def test_ensemble_reports_composing_models(served: tuple[RunningServer, Path]) -> None:
    server, _ = served
    output = drive(server, "grpc", "-m", "chain", "--shape", "IN:16", "-v")
    composing = output.split("Composing models:", 1)[1]
    assert "identity, version: 1" in composing, output
    assert "Successful request count:" in composing, output


def test_decoupled_stream_profile_export(
    served: tuple[RunningServer, Path], tmp_path: Path
) -> None:
    server, _ = served
    export = tmp_path / "profile.json"
    drive(
        server,
        "grpc",
        "-m",
        "triple",
        "--streaming",
        "--shape",
        "INPUT0:4",
        "--periodic-concurrency-range",
        "1:3:1",
        "--request-period",
        "2",
        "--profile-export-file",
        str(export),
        summary=False,
    )
    requests = json.loads(export.read_text())["experiments"][0]["requests"]
    assert requests
    for request in requests:
        # Three responses with data, then the FINAL flag's empty one.
        outputs = request["response_outputs"]
        assert [o["OUTPUT0"] for o in outputs[:3]] == [
            request["request_inputs"]["INPUT0"]
        ] * 3
        assert len(outputs) == 4 and outputs[3]["OUTPUT0"] == ""


@pytest.mark.parametrize(
    ("protocol", "extra"),
    [
        ("grpc", ["--async", "-b", "4", "--concurrency-range", "2"]),
        ("http", ["--request-rate-range", "100"]),
        ("grpc", ["--request-rate-range", "100", "--request-distribution", "poisson"]),
        ("http", ["--input-tensor-format", "json", "--output-tensor-format", "json"]),
        ("grpc", ["--request-parameter", "tag:1:int", "-H", "x-request-tag: 1"]),
        ("grpc", ["--grpc-compression-algorithm", "gzip", "-x", "1"]),
    ],
    ids=[
        "async-batch4",
        "request-rate",
        "poisson",
        "json-tensors",
        "parameters",
        "gzip",
    ],
)
def test_identity_load_modes(
    served: tuple[RunningServer, Path], protocol: str, extra: list[str]
) -> None:
    server, _ = served
    drive(server, protocol, "-m", "identity", "--shape", "INPUT0:16", *extra)


def test_strings_from_the_command_line(served: tuple[RunningServer, Path]) -> None:
    # The model fails any request whose strings are not among its allowed ones.
    server, _ = served
    drive(
        server, "http", "-m", "strings", "--string-data", "hello", "--shape", "INPUT0:3"
    )


def test_metrics_collected_from_the_metrics_port(
    served: tuple[RunningServer, Path], tmp_path: Path
) -> None:
    server, _ = served
    report = tmp_path / "report.csv"
    output = drive(
        server,
        "grpc",
        "-m",
        "identity",
        "--shape",
        "INPUT0:16",
        "--collect-metrics",
        "--metrics-url",
        server.metrics_url,
        "--metrics-interval",
        "100",
        "-f",
        str(report),
        "--verbose-csv",
    )
    # Without a GPU the nv_gpu_* families are absent, which perf_analyzer (as against
    # Triton on a CPU-only machine) reports as a warning, not an error.
    assert "Unable to connect to Metrics endpoint" not in output
    assert "Avg GPU Utilization" in report.read_text().splitlines()[0]
