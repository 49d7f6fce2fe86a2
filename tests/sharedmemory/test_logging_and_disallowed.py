"""Triton's logging extension (``/v2/logging``, gRPC ``LogSettings``) changing the
running server's log, and ``--allow-client-shm=false``: one server for both."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, free_port, run_server, server_command, server_env
from shmutil import Region
from tritonclient.utils import InferenceServerException

DEFAULTS = {
    "log_file": "",
    "log_info": True,
    "log_warning": True,
    "log_error": True,
    "log_verbose_level": 0,
    "log_format": "default",
}
DISALLOWED = (
    "client shared memory is disabled on this server (--allow-client-shm=false)"
)


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    # The log goes to the console, where run_server reads it.
    with run_server(repo, "--allow-client-shm=false") as running:
        yield running


def post(server: RunningServer, path: str, body: Any) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        conn.request(
            "POST", path, body if isinstance(body, bytes) else json.dumps(body)
        )
        reply = conn.getresponse()
        text = reply.read()
        return reply.status, json.loads(text) if text else None
    finally:
        conn.close()


def console_after(server: RunningServer, mark: int, text: str) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if text in server.log_text()[mark:]:
            return True
        time.sleep(0.05)
    return False


def test_http_logging_round_trip(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    assert client.get_log_settings() == DEFAULTS
    try:
        assert post(server, "/v2/logging", {"log_verbose_level": 1})[1] == {
            **DEFAULTS,
            "log_verbose_level": 1,
        }
        cases = [
            ({"log_file": "/tmp/x.log"}, 501,
             "log file location can not be updated through network protocol"),
            ({"log_verbose_level": -1}, 500,
             "attempt to access JSON non-unsigned-integer as unsigned-integer"),
            ({"log_info": "true"}, 500, "attempt to access JSON non-boolean as boolean"),
            ({"log_format": 5}, 500, "attempt to access JSON non-string as string"),
            ({"log_format": "xml"}, 503, "invalid argument for --log_format, got: xml"),
        ]  # fmt: skip
        for body, status, message in cases:
            assert post(server, "/v2/logging", body) == (status, {"error": message})
        # Unknown keys and nulls change nothing; settings before a bad one stay.
        assert post(server, "/v2/logging", {"foo": 1, "log_info": None})[0] == 200
        assert (
            post(server, "/v2/logging", {"log_warning": False, "log_format": 1})[0]
            == 500
        )
        assert client.get_log_settings()["log_warning"] is False
    finally:
        client.update_log_settings(
            {"log_verbose_level": 0, "log_warning": True, "log_format": "default"}
        )
        assert client.get_log_settings() == DEFAULTS
        client.close()


def test_grpc_log_settings(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        settings = client.get_log_settings(as_json=True)["settings"]
        assert settings["log_verbose_level"] == {"uint32_param": 0}
        updated = client.update_log_settings({"log_format": "ISO8601"}, as_json=True)
        assert updated["settings"]["log_format"] == {"string_param": "ISO8601"}
        for change, code, message in [
            ({"log_format": "xml"}, "StatusCode.INVALID_ARGUMENT",
             "invalid argument for log_format, got: xml"),
            ({"log_file": "/tmp/y.log"}, "StatusCode.UNIMPLEMENTED",
             "log file location can not be updated through network protocol"),
        ]:  # fmt: skip
            with pytest.raises(InferenceServerException) as info:
                client.update_log_settings(change)
            assert (str(info.value.status()), info.value.message()) == (code, message)
        # The HTTP side sees the same settings.
        assert (
            httpclient.InferenceServerClient(server.http_url).get_log_settings()[
                "log_format"
            ]
            == "ISO8601"
        )
    finally:
        client.update_log_settings({"log_format": "default"})
        client.close()


def test_verbose_level_changes_the_log(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        mark = len(server.log_text())
        client.unregister_system_shared_memory("quiet-region")
        client.update_log_settings({"log_verbose_level": 1, "log_format": "ISO8601"})
        client.unregister_system_shared_memory("loud-region")
        assert console_after(server, mark, "'loud-region'")
        line = next(
            x for x in server.log_text()[mark:].splitlines() if "loud-region" in x
        )
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ I ", line), line
        client.update_log_settings({"log_verbose_level": 0})
        client.unregister_system_shared_memory("silent-region")
        client.get_server_metadata()  # one more round trip before looking
        assert "quiet-region" not in server.log_text()[mark:]
        assert "silent-region" not in server.log_text()[mark:]
    finally:
        client.update_log_settings({"log_verbose_level": 0, "log_format": "default"})
        client.close()


def test_client_shm_disallowed(server: RunningServer, region: Region) -> None:
    key, _ = region(64, [1, 2, 3, 4])
    assert post(
        server,
        "/v2/systemsharedmemory/region/a/register",
        {"key": key, "byte_size": 64},
    ) == (501, {"error": DISALLOWED})
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as info:
        client.register_system_shared_memory("a", key, 64)
    assert info.value.message() == DISALLOWED
    inp = grpcclient.InferInput("INPUT0", [4], "FP32")
    inp.set_shared_memory("a", 16)
    with pytest.raises(InferenceServerException) as info:
        client.infer("echo", [inp])
    assert (str(info.value.status()), info.value.message()) == (
        "StatusCode.UNIMPLEMENTED",
        DISALLOWED,
    )
    body = {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "FP32",
                "shape": [4],
                "parameters": {
                    "shared_memory_region": "a",
                    "shared_memory_byte_size": 16,
                },
            }
        ]
    }
    assert post(server, "/v2/models/echo/infer", body) == (501, {"error": DISALLOWED})
    assert client.get_system_shared_memory_status(as_json=True) == {}
    client.close()


def test_log_file_receives_verbose_lines(repo: Path, tmp_path: Path) -> None:
    """With --log-file the settings name the file, and turning verbose logging on
    over the API makes verbose lines appear in it."""
    log = tmp_path / "server.log"
    http_port, grpc_port = free_port(), free_port()
    cmd = server_command(
        [repo],
        [
            f"--http-port={http_port}",
            f"--grpc-port={grpc_port}",
            "--allow-metrics=false",
            f"--log-file={log}",
        ],
    )
    process = subprocess.Popen(cmd, env=server_env(), stdout=subprocess.DEVNULL)
    try:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text() if log.exists() else ""
            try:
                if client.is_server_ready():
                    break
            except Exception:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert client.get_log_settings()["log_file"] == str(log)
        client.unregister_system_shared_memory("before-verbose")
        client.update_log_settings({"log_verbose_level": 1})
        client.unregister_system_shared_memory("after-verbose")
        client.close()
        deadline = time.monotonic() + 10
        while "'after-verbose'" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = log.read_text()
        assert "Started HTTPService" in text
        assert "'after-verbose'" in text
        assert "'before-verbose'" not in text
    finally:
        process.terminate()
        process.wait(timeout=30)
