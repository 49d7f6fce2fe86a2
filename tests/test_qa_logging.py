"""Triton's L0_logging QA as a differential test: the log flags seen through the
logging extension (HTTP and gRPC), ``--log-file`` taking the log off the console,
``--log-info``/``--log-warning``/``--log-error`` silencing their lines until the
API turns them back on, the verbose request lines, the format switched at run
time, malformed update bodies, and which stream the log goes to (Triton 2.51
writes every level to stderr and nothing to stdout) when a model's version
directory is ignored (leading zero) and the server cannot start.

The same steps run against tritonx and Triton 2.51; the settings, answers and
the message text of the log lines that matter must be equal (times, thread ids
and source locations differ by nature and are not compared)."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import (
    RunningServer,
    differential,
    free_ports,
    reference_command,
    run_either,
    run_reference,
    run_server,
    server_command,
    server_env,
    split_glued_entries,
)
from testmodels import ECHO_MODEL, write_model
from tritonclient.utils import InferenceServerException

ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
"""
DEFAULT_LINE = re.compile(r"^([IWE])\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ [^ ]+:\d+\] (.*)$")
ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ([IWE]) \d+ [^ ]+:\d+\] (.*)$")
FAKE = 'I0205 18:34:18.707423 1 file.cc:123] "THIS ENTRY WAS INJECTED"'


def build_repo(repo: Path) -> Path:
    write_model(repo, "echo", ECHO_CONFIG, ECHO_MODEL)
    return repo


@contextmanager
def quiet_server(kind: str, repo: Path, *args: str) -> Iterator[RunningServer]:
    """A server whose console may not name its ports (--log-file, --log-info
    false): started on chosen ports and waited for through readiness."""
    if kind == "reference":
        with run_reference([repo], *args) as server:
            yield server
        return
    ports = dict(zip(("http", "grpc", "metrics"), free_ports(3), strict=True))
    flags = [f"--{name}-port={port}" for name, port in ports.items()]
    with run_server(repo, *flags, *args, services=[]) as server:
        server.ports.update(ports)

        def ready() -> bool:
            try:
                url = f"http://{server.http_url}/v2/health/ready"
                with urllib.request.urlopen(url, timeout=1) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        wait_until(ready, "tritonx ready")
        yield server


def messages(text: str, levels: str = "IWE") -> list[str]:
    """The messages of the log lines of ``levels`` (either format)."""
    out = []
    for line in text.splitlines():
        match = DEFAULT_LINE.match(line) or ISO_LINE.match(line)
        if match and match.group(1) in levels:
            out.append(match.group(2))
    return out


def infer_both(server: RunningServer) -> None:
    data = np.arange(4, dtype=np.float32)
    for module, url in ((httpclient, server.http_url), (grpcclient, server.grpc_url)):
        client = module.InferenceServerClient(url)
        inp = module.InferInput("INPUT0", [4], "FP32")
        inp.set_data_from_numpy(data)
        client.infer("echo", [inp])
        client.close()


def post(server: RunningServer, path: str, body: bytes) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        conn.request("POST", path, body)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"null")
    finally:
        conn.close()


def file_scenario(tmp_path: Path, kind: str) -> dict[str, Any]:
    """--log-file with info off, verbose 1 and ISO8601; info back on, then the
    default format, through the API (model unload/load lines show each change);
    an input name that imitates two log records."""
    work = tmp_path / kind
    repo = build_repo(work / "repo")
    log = work / "server.log"
    seen: dict[str, Any] = {}
    with quiet_server(
        kind,
        repo,
        f"--log-file={log}",
        "--log-info=false",
        "--log-verbose=1",
        "--log-format=ISO8601",
        "--model-control-mode=explicit",
        "--load-model=echo",
    ) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        settings = client.get_log_settings()
        seen["http_settings"] = {
            **settings,
            "log_file": settings["log_file"] == str(log),
        }
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        settings = grpc.get_log_settings(as_json=True)["settings"]
        settings["log_file"] = settings["log_file"]["string_param"] == str(log)
        seen["grpc_settings"] = settings
        grpc.close()
        infer_both(server)
        # A bad input named like two log records must stay inside one record.
        inp = httpclient.InferInput(f"\n{FAKE}\n{FAKE}", [4], "FP32")
        inp.set_data_from_numpy(np.zeros(4, dtype=np.float32))
        try:
            client.infer("echo", [inp])
        except InferenceServerException as error:
            seen["injected_error"] = str(error).count("INJECTED")
        client.unload_model("echo")
        wait_until(lambda: not client.is_model_ready("echo"), "echo unloaded")
        client.load_model("echo")

        def lines(text: str) -> list[str]:
            return [m for m in messages(log.read_text()) if text in m]

        seen["quiet_lines"] = lines("successfully") + lines("Started HTTPService")
        seen["updated"] = client.update_log_settings({"log_info": True})
        seen["updated"]["log_file"] = seen["updated"]["log_file"] == str(log)
        client.unload_model("echo")
        wait_until(lambda: lines("successfully unloaded 'echo'"), "unload line")
        unloaded = next(
            x for x in log.read_text().splitlines() if "successfully unloaded" in x
        )
        seen["unload_line_iso"] = bool(ISO_LINE.match(unloaded))
        client.update_log_settings({"log_format": "default"})
        client.load_model("echo")
        wait_until(lambda: lines("successfully loaded 'echo'"), "load line")
        loaded = next(
            x for x in log.read_text().splitlines() if "successfully loaded 'echo'" in x
        )
        seen["load_line_default"] = bool(DEFAULT_LINE.match(loaded))
        client.close()
    # The console carries no log line: everything went to the file.
    seen["console_lines"] = len(messages(server.log_text()))
    text = log.read_text()
    seen["waiting_lines"] = sum(
        "Waiting for in-flight requests" in m for m in messages(text)
    )
    seen["fake_records"] = sum(line == FAKE for line in text.splitlines())
    return seen


def test_log_file_flags_and_live_changes(tmp_path: Path) -> None:
    seen = differential(lambda kind: file_scenario(tmp_path, kind))
    assert seen["http_settings"] == {
        "log_file": True,
        "log_info": False,
        "log_warning": True,
        "log_error": True,
        "log_verbose_level": 1,
        "log_format": "ISO8601",
    }
    assert seen["grpc_settings"]["log_info"] == {"bool_param": False}
    assert seen["grpc_settings"]["log_format"] == {"string_param": "ISO8601"}
    assert seen["quiet_lines"] == []
    assert seen["unload_line_iso"] is True
    assert seen["load_line_default"] is True
    assert seen["console_lines"] == 0
    assert seen["waiting_lines"] == 1
    assert seen["fake_records"] == 0
    assert seen["updated"]["log_info"] is True


BAD_BODIES: list[bytes] = [
    body
    for key in ("log_info", "log_warning", "log_error")
    for body in (
        f'{{"{key}":1}}'.encode(),
        f'{{"{key}":False}}'.encode(),
        f'{{"{key}":"false"}}'.encode(),
        f'{{"{key}":true}}'.encode(),
    )
] + [b'{"log_verbose_level":-1}', b'{"log_verbose_level":"1"}']


def quiet_levels_scenario(tmp_path: Path, kind: str) -> dict[str, Any]:
    """Warnings and errors off from the flags, then on through the API: a
    reload of a model with ignored version directories and a load of a missing
    model log only once they are on. Also malformed update bodies and Triton's
    update sequences over both protocols."""
    work = tmp_path / kind
    repo = build_repo(work / "repo")
    for ignored in ("01", "x1"):  # warned about at startup, with warnings off
        (repo / "echo" / ignored).mkdir()
    seen: dict[str, Any] = {}
    with quiet_server(
        kind,
        repo,
        "--log-warning=false",
        "--log-error=false",
        "--model-control-mode=explicit",
        "--load-model=echo",
    ) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        seen["settings"] = client.get_log_settings()
        client.load_model("echo")
        try:
            client.load_model("missing")
        except InferenceServerException as error:
            seen["missing"] = str(error)
        client.update_log_settings({"log_warning": True, "log_error": True})
        mark = len(server.log_text())
        client.unload_model("echo")
        wait_until(lambda: not client.is_model_ready("echo"), "echo unloaded")
        client.load_model("echo")
        with suppress(InferenceServerException):
            client.load_model("missing")
        client.get_log_settings()  # one more round trip before reading
        text = server.log_text()
        seen["quiet"] = messages(text[:mark], "WE")
        seen["loud"] = sorted(
            m for m in messages(text[mark:], "WE") if "echo" in m or "missing" in m
        )
        seen["bad_bodies"] = [post(server, "/v2/logging", body) for body in BAD_BODIES]
        seen["verbose_zero"] = post(server, "/v2/logging", b'{"log_verbose_level":0}')
        steps: list[dict[str, Any]] = [
            {"log_file": "log_file.log", "log_info": True},
            {"log_info": False},
            {"log_warning": False},
            {"log_error": False},
            {"log_verbose_level": 1},
            {"log_format": "ISO8601"},
        ]
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        for name, update in (
            ("http", client.update_log_settings),
            ("grpc", lambda s: grpc.update_log_settings(s, as_json=True)),
        ):
            client.update_log_settings(
                {
                    "log_info": True,
                    "log_warning": True,
                    "log_error": True,
                    "log_verbose_level": 0,
                    "log_format": "default",
                }
            )
            answers: list[Any] = []
            for step in steps:
                try:
                    answers.append(update(step))
                except InferenceServerException as error:
                    answers.append((str(error.status()), error.message()))
            seen[f"{name}_steps"] = answers
        grpc.close()
        client.close()
    return seen


def test_quiet_levels_and_update_bodies(tmp_path: Path) -> None:
    seen = differential(lambda kind: quiet_levels_scenario(tmp_path, kind))
    assert seen["settings"]["log_warning"] is False
    assert seen["settings"]["log_error"] is False
    # The ignored version directories warned while warnings were off: nothing.
    assert seen["quiet"] == []
    assert seen["loud"] == [
        "\"failed to poll model 'missing': model not found in any model repository.\""
    ]
    # Triton 2.51 answers 500 to each malformed value (the QA asks only "not 200").
    assert [status for status, _ in seen["bad_bodies"]] == [500, 500, 500, 200] * 3 + [
        500,
        500,
    ]
    assert seen["verbose_zero"][0] == 200
    for name in ("http", "grpc"):
        first = seen[f"{name}_steps"][0]
        assert (
            first[1] == "log file location can not be updated through network protocol"
        )
    assert seen["http_steps"][-1] == {
        "log_file": "",
        "log_info": False,
        "log_warning": False,
        "log_error": False,
        "log_verbose_level": 1,
        "log_format": "ISO8601",
    }


def run_until_it_gives_up(
    kind: str, repo: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Start a server of ``kind`` on ``repo``, whose model fails to load, and let
    it exit (exit-on-error): its exit status and both streams."""
    ports = free_ports(3)
    flags = [
        f"--model-repository={repo}",
        *args,
        f"--http-port={ports[0]}",
        f"--grpc-port={ports[1]}",
        f"--metrics-port={ports[2]}",
    ]
    if kind == "reference":
        cmd, env = [*(reference_command() or []), *flags], dict(os.environ)
    else:
        cmd, env = server_command([], flags), server_env()
    return subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_every_level_goes_to_stderr(tmp_path: Path) -> None:
    """A model whose only version directory has a leading zero: the server logs
    the warning and the load error, then gives up; stdout stays empty."""

    def scenario(kind: str) -> dict[str, Any]:
        repo = build_repo(tmp_path / kind / "repo")
        (repo / "echo" / "1").rename(repo / "echo" / "01")
        result = run_until_it_gives_up(kind, repo, "--log-verbose=1")
        return {
            "returncode": result.returncode,
            "stdout": result.stdout,
            "levels": sorted(set(m[0] for m in _levels(result.stderr))),
            "model_lines": sorted(
                m[1]
                for m in _levels(result.stderr)
                if "'echo'" in m[1] or "'01'" in m[1]
            ),
            # Triton's last word is a plain line on stderr, not a log record.
            "failure": [
                line for line in result.stderr.splitlines() if "creating server" in line
            ],
        }

    seen = differential(scenario)
    assert seen["returncode"] == 1
    assert seen["stdout"] == ""
    assert seen["levels"] == ["E", "I", "W"]
    assert len(seen["model_lines"]) == 2
    assert seen["failure"] == [
        "error: creating server: Internal - failed to load all models"
    ]


def _levels(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        match = DEFAULT_LINE.match(line)
        if match:
            out.append((match.group(1), match.group(2)))
    return out


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
        conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
        try:
            conn.request(method, target, body)
            conn.getresponse().read()
        finally:
            conn.close()


def _http_lines(server: RunningServer) -> list[str]:
    return [
        m
        for m in messages(split_glued_entries(server.log_text()))
        if m.startswith(('"HTTP request: ', '"HTTP error: '))
    ]


def verbose_request_scenario(repo: Path, kind: str, *args: str) -> dict[str, Any]:
    """L0_logging's verbose check: at --log-verbose=1 each HTTP request logs its
    method (Triton's HTTP library's number) and path, a path no route matches
    also an error line; verbose level 0 set through the API stops them, 1 brings
    them back."""
    with run_either(kind, repo, "--log-verbose=1", *args) as server:
        # (Triton's own lines from the start-up readiness probes are not counted.)
        start = len(_http_lines(server))
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
