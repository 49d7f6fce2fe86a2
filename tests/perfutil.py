"""Shared pieces of the tritonx-perf tests (tests/tools/test_perf_tool*.py): the
models they serve, the CLI runner and the checks every CSV row must pass."""

from __future__ import annotations

import csv
import http.client
import json
import subprocess
import sys
from pathlib import Path

from serverutil import RunningServer, server_env
from testmodels import write_model  # re-exported for the perf tests

SHORT = [
    "--measurement-mode",
    "count_windows",
    "--measurement-request-count",
    "30",
    "--max-trials",
    "3",
    "--stability-percentage",
    "100",
]

PA_COLUMNS = [
    "Inferences/Second",
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
]
VERBOSE_COLUMNS = ["Avg latency", "request/response", "response wait"]

IDENTITY = """
name: "identity"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
dynamic_batching { }
"""

# BYTES in, BYTES out; a request whose strings are not the expected ones fails, so a
# successful run proves tritonx-perf sent the data file's strings intact.
STRINGS = """
name: "strings"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT0", data_type: TYPE_STRING, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_STRING, dims: [ -1 ] } ]
"""
STRINGS_MODEL = """
import triton_python_backend_utils as pb_utils

ALLOWED = {b"hello", b"wide world", "\\u00e9t\\u00e9".encode()}


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            value = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            if not set(value.reshape(-1).tolist()) <= ALLOWED:
                out.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"unexpected {value!r}")))
            else:
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", value)]))
        return out
"""

# A sequence model that logs every request it executes (correlation id, START, END,
# INPUT; a batcher's null requests, READY false, are skipped), in execution order, to the
# file named by its "log" parameter: a test reads the sequences the server saw.
SEQUENCE_LOG = """
name: "NAME"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUTPUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
instance_group [ { count: 1, kind: KIND_CPU } ]
parameters { key: "log" value: { string_value: "LOG" } }
"""
SEQUENCE_LOG_MODEL = """
import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.log = open(config["parameters"]["log"]["string_value"], "a")

    def execute(self, requests):
        out = []
        for r in requests:
            get = lambda n: int(pb_utils.get_input_tensor_by_name(r, n).as_numpy().reshape(-1)[0])
            if get("READY"):
                self.log.write(
                    f"{get('CORRID')} {get('START')} {get('END')} {get('INPUT')}\\n"
                )
            x = pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", x)]))
        self.log.flush()
        return out
"""


def write_sequence_log_model(repo: Path, name: str, log: Path) -> None:
    config = SEQUENCE_LOG.replace("NAME", name).replace("LOG", str(log))
    write_model(repo, name, config, SEQUENCE_LOG_MODEL)


def check_sequences(lines: list[str]) -> tuple[list[int], int]:
    """Checks that the logged requests form whole sequences: each id STARTs before
    its other requests, ENDs once, and is not reused while open; every sequence
    ended. Returns the sequence ids seen and the most sequences open at once."""
    open_ids: set[int] = set()
    ids: list[int] = []
    most = 0
    for line in lines:
        corrid, start, end = (int(v) for v in line.split()[:3])
        if start:
            assert corrid not in open_ids, f"sequence {corrid} restarted while open"
            open_ids.add(corrid)
            ids.append(corrid)
        assert corrid in open_ids, f"request for sequence {corrid}, which is not open"
        most = max(most, len(open_ids))
        if end:
            open_ids.discard(corrid)
    assert not open_ids, f"sequences never ended: {sorted(open_ids)}"
    return ids, most


# Generated data as the model sees it: every TEXT element must be 7 bytes long
# (--string-length 7), and NUM all zeros exactly when the strings are zero data
# ("0000000", --input-data zero); random data fails the other way round.
GENERATED = """
name: "generated"
backend: "python"
max_batch_size: 0
input [ { name: "TEXT", data_type: TYPE_STRING, dims: [ 2 ] },
        { name: "NUM", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 4 ] } ]
"""
GENERATED_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            text = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy().reshape(-1)
            num = pb_utils.get_input_tensor_by_name(r, "NUM").as_numpy()
            zero = all(t == b"0" * 7 for t in text)
            if any(len(t) != 7 for t in text) or zero != (not num.any()):
                out.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"unexpected {text!r} {num!r}")))
            else:
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", num)]))
        return out
"""


# One instance, 20 ms per execute, no batching: at 200 requests/s requests must
# queue, so a client that holds one request per thread cannot keep the rate.
SLEEPY = """
name: "sleepy"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""
SLEEPY_MODEL = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.02)
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]
            )
            for r in requests
        ]
"""


def perf(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tritonx.tools.perf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=server_env(),
    )


def ok_run(*args: str) -> str:
    result = perf(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def url(server: RunningServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open() as handle:
        rows = list(csv.reader(handle))
    return rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def check_row(row: dict[str, str]) -> None:
    assert float(row["Inferences/Second"]) > 0
    p = [int(row[f"p{q} latency"]) for q in (50, 90, 95, 99)]
    assert p == sorted(p), row
    assert int(row["Avg latency"]) > 0
    # The client's latency is the sum of its parts (rounding to whole usec aside).
    parts = int(row["request/response"]) + int(row["response wait"])
    assert abs(parts - int(row["Avg latency"])) <= 2, row


def success_count(server: RunningServer, model: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
    conn.request("GET", f"/v2/models/{model}/stats")
    stats = json.loads(conn.getresponse().read())["model_stats"]
    conn.close()
    return sum(int(v["inference_stats"]["success"]["count"]) for v in stats)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
