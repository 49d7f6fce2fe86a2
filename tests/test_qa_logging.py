"""Triton's L0_logging QA as a differential test: the log flags seen through the
logging extension (HTTP and gRPC), ``--log-file`` taking the log off the console,
``--log-info``/``--log-warning``/``--log-error`` silencing their lines until the
API turns them back on, the format switched at run time, malformed update
bodies, and which stream the log goes to (Triton 2.51 writes every level to
stderr and nothing to stdout) when a model's version directory is ignored
(leading zero) and the server cannot start. Escaping, the verbose request lines
and multi-line reasons: test_qa_log_format.py.

The same steps run against tritonx and Triton 2.51; the settings, answers and
the message text of the log lines that matter must be equal (times, thread ids
and source locations differ by nature and are not compared)."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_until
from logutil import (
    DEFAULT_LINE,
    FAKE,
    ISO_LINE,
    build_repo,
    infer_both,
    leveled_lines,
    messages,
    post,
    quiet_server,
    run_until_it_gives_up,
)
from serverutil import (
    differential,
)
from tritonclient.utils import InferenceServerException


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
        # Triton writes the line after it answers, now and then later than one more
        # round trip (a miss here shows as a difference in "loud").
        server.wait_for_log("failed to poll model 'missing'", timeout=10)
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
            "levels": sorted(set(m[0] for m in leveled_lines(result.stderr))),
            "model_lines": sorted(
                m[1]
                for m in leveled_lines(result.stderr)
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
