"""Triton's L0_logging QA, continued (see test_qa_logging.py): log messages are
JSON strings unless escaping is turned off (control characters and injected lines
made harmless), the verbose lines of each request, and a multi-line load failure
reason taking several rows of the model table.

The same steps run against tritonx and Triton 2.51 and must agree."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from logutil import (
    DEFAULT_LINE,
    ECHO_CONFIG,
    FAKE,
    build_repo,
    http_request,
    messages,
    post,
    run_until_it_gives_up,
)
from serverutil import (
    RunningServer,
    differential,
    run_either,
    split_glued_entries,
)
from testmodels import write_model

# Logs what the client sent, as a model that logs its inputs would.
ECHO_TEXT_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()[0]
            pb_utils.Logger.log_info("client sent: " + text.decode())
            responses.append(pb_utils.InferenceResponse([]))
        return responses
"""

ECHO_TEXT_CONFIG = """
name: "echo_text"
backend: "python"
input [ { name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "UNUSED", data_type: TYPE_FP32, dims: [ 1 ] } ]
"""

# L0_logging's control-character injection: terminal escapes and a bell.
CONTROL = "\u001b[31mESC-INJECTION-LFUNICODE:\u001b[32mSUCCESSFUL\u001b[0m\u0007"


@pytest.mark.parametrize("escape", [None, "1", "0"])
def test_messages_are_json_strings_unless_escaping_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, escape: str | None
) -> None:
    """L0_logging's log_format_test: every message is a JSON string, so text a
    client controls (here logged by the model; a newline, a quote, a whole fake
    entry, terminal escapes, other scripts) stays inside its entry; with
    TRITON_SERVER_ESCAPE_LOG_MESSAGES=0 it is written raw and unquoted, and the
    fake entry appears as a line of its own. Tables stay multi-line entries."""
    if escape is None:
        monkeypatch.delenv("TRITON_SERVER_ESCAPE_LOG_MESSAGES", raising=False)
    else:
        monkeypatch.setenv("TRITON_SERVER_ESCAPE_LOG_MESSAGES", escape)
    repo = tmp_path / "repo"
    write_model(repo, "echo_text", ECHO_TEXT_CONFIG, ECHO_TEXT_MODEL)
    sent = [f'a "quoted" \\ path\n{FAKE}\n', CONTROL, "tab\there, é ü 字"]

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, repo) as server:
            with httpclient.InferenceServerClient(server.http_url) as client:
                for text in sent:
                    inp = httpclient.InferInput("TEXT", [1], "BYTES")
                    inp.set_data_from_numpy(np.array([text.encode()], np.object_))
                    client.infer("echo_text", [inp])
            wait_until(
                lambda: server.log_text().count("client sent: ") == len(sent),
                "the model's lines",
            )
            text = server.log_text()
        lines = text.splitlines()
        heads = [m.group(2) for m in map(DEFAULT_LINE.match, lines) if m]
        # The model table: its entry's line, then a rule, then the header row.
        header = lines.index("| Model     | Version | Status |")
        entry = DEFAULT_LINE.match(lines[header - 2])
        return {
            "logged": [h for h in heads if "client sent: " in h],
            "fake_entries": lines.count(FAKE),
            "table_heading": entry.group(2) if entry else None,
            "table": lines[header - 1 : header + 4],
        }

    seen = differential(scenario)
    if escape == "0":
        assert seen["fake_entries"] == 1
        assert seen["logged"][1] == f"client sent: {CONTROL}"
    else:
        assert seen["fake_entries"] == 0
        assert [json.loads(m) for m in seen["logged"]] == [
            f"client sent: {text}" for text in sent
        ]
    assert seen["table_heading"] == ""
    assert seen["table"] == [
        "+-----------+---------+--------+",
        "| Model     | Version | Status |",
        "+-----------+---------+--------+",
        "| echo_text | 1       | READY  |",
        "+-----------+---------+--------+",
    ]


# (method, target, body) sent one after the other; the paths Triton's routes miss
# get its "HTTP error" line too.
VERBOSE_REQUESTS = [
    ("GET", "/v2/logging", None),
    ("GET", "/v2/health/ready?probe=1", None),
    (
        "POST",
        "/v2/models/echo/infer",
        b'{"inputs":[{"name":"INPUT0","shape":[4],"datatype":"FP32",'
        b'"data":[1,2,3,4]}]}',
    ),
    ("GET", "/v2/models/missing", None),
    ("HEAD", "/v2/%6Dodels/echo", None),
    ("POST", "/v2/repository/index", b""),
    ("PUT", "/v2/models/echo/config", b""),
    ("DELETE", "/v2/models/echo/stats", None),
    ("OPTIONS", "/v2/models/echo/ready", None),
    ("PATCH", "/v2/no/such/route", b""),
]


def _send_verbose_requests(server: RunningServer) -> None:
    for method, target, body in VERBOSE_REQUESTS:
        http_request(server, method, target, body)


def _http_lines(server: RunningServer) -> list[str]:
    return [
        m
        for m in messages(split_glued_entries(server.log_text()))
        if m.startswith(('"HTTP request: ', '"HTTP error: '))
    ]


def _lines_through_a_marker(server: RunningServer) -> int:
    """How many HTTP lines the log holds up to a marker request's line. The lines
    of the start-up readiness probes come before it and are not counted: Triton
    may write them after it has answered the probe, so counting what is there
    when the server is ready is not enough."""
    http_request(server, "GET", "/v2/models/log-marker/ready")

    def marker_line() -> int | None:
        lines = _http_lines(server)
        hits = [i for i, line in enumerate(lines) if "/log-marker/" in line]
        return hits[-1] + 1 if hits else None

    wait_until(lambda: marker_line() is not None, "the marker request's line")
    found = marker_line()
    assert found is not None
    return found


def verbose_request_scenario(repo: Path, kind: str, *args: str) -> dict[str, Any]:
    """L0_logging's verbose check: at --log-verbose=1 each HTTP request logs its
    method (Triton's HTTP library's number) and path, a path no route matches
    also an error line; verbose level 0 set through the API stops them, 1 brings
    them back."""
    with run_either(kind, repo, "--log-verbose=1", *args) as server:
        start = _lines_through_a_marker(server)
        _send_verbose_requests(server)
        url = f"http://127.0.0.1:{server.ports['metrics']}/metrics?name=nv"
        with urllib.request.urlopen(url, timeout=60) as reply:
            reply.read()
        expected = len(VERBOSE_REQUESTS) + 3  # two error lines, the metrics one
        wait_until(
            lambda: len(_http_lines(server)) >= start + expected, "the request lines"
        )
        seen: dict[str, Any] = {"lines": _http_lines(server)[start:]}
        post(server, "/v2/logging", b'{"log_verbose_level":0}')
        _send_verbose_requests(server)
        post(server, "/v2/logging", b'{"log_verbose_level":1}')
        _send_verbose_requests(server)
        wait_until(
            lambda: len(_http_lines(server)) >= start + 2 * expected,
            "the lines again",
        )
        seen["after"] = _http_lines(server)[start + expected :]
    return seen


def test_verbose_request_lines(tmp_path: Path) -> None:
    repo = build_repo(tmp_path / "repo")
    seen = differential(lambda kind: verbose_request_scenario(repo, kind))
    assert seen["lines"] == [
        '"HTTP request: 0 /v2/logging"',
        '"HTTP request: 0 /v2/health/ready"',
        '"HTTP request: 2 /v2/models/echo/infer"',
        '"HTTP request: 0 /v2/models/missing"',
        '"HTTP request: 1 /v2/%6Dodels/echo"',
        '"HTTP error: 1 /v2/%6Dodels/echo - 404"',
        '"HTTP request: 2 /v2/repository/index"',
        '"HTTP request: 3 /v2/models/echo/config"',
        '"HTTP request: 4 /v2/models/echo/stats"',
        '"HTTP request: 8 /v2/models/echo/ready"',
        '"HTTP request: 15 /v2/no/such/route"',
        '"HTTP error: 15 /v2/no/such/route - 404"',
        '"HTTP request: 0 /metrics"',
    ]
    # The update to level 0 is logged (it arrives while verbose), the one back
    # to 1 is not; then every request again.
    assert seen["after"] == ['"HTTP request: 2 /v2/logging"', *seen["lines"][:-1]]
    # The Python HTTP engine writes the same lines.
    python_engine = verbose_request_scenario(repo, "tritonx", "--http-engine=python")
    assert python_engine == seen


# initialize fails with a message of several lines, one with the table's own
# separator in it.
BROKEN_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        raise Exception("first line\\nsecond | line, the longest of them all")

    def execute(self, requests):
        return []
"""


def test_a_multi_line_reason_takes_several_table_rows(tmp_path: Path) -> None:
    """The start-up model table splits a cell at its newlines, as Triton's table
    does: a failure reason of several lines (a python model's error and its
    traceback) takes several rows, and the table keeps its shape."""

    def scenario(kind: str) -> dict[str, Any]:
        # Paths of one length: the traceback's path sets the column's width.
        repo = tmp_path / kind[0] / "repo"
        write_model(repo, "broken", ECHO_CONFIG.replace("echo", "broken"), BROKEN_MODEL)
        result = run_until_it_gives_up(kind, repo)
        lines = result.stderr.splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("| Model"))
        end = next(i for i in range(header + 2, len(lines)) if lines[i][0] == "+")
        table = lines[header - 1 : end + 1]
        return {
            "widths": sorted({len(line) for line in table}),
            "table": [line.replace(str(repo), "<repo>") for line in table],
        }

    seen = differential(scenario)
    assert len(seen["widths"]) == 1  # every line as wide
    rows = [line for line in seen["table"] if line.startswith("|")]
    assert rows[1].startswith("| broken | 1       | UNAVAILABLE: Internal: ")
    assert rows[2].startswith("|        |         | second | line, the longest")
    assert "<repo>/broken/1/model.py" in "".join(rows[3:])
