"""pb_utils.Logger lines reach the server log at every level the server prints,
from initialize, execute and a thread the model starts, in both execution modes.

A stub process forwards its records to the server; it once took the root
logger's level (WARNING: the server configures its own logger, not the root),
so a stub model's INFO and verbose lines were dropped.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, run_server

CONFIG = """
name: "chatty"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

MODEL = """
import threading
import triton_python_backend_utils as pb_utils

log = pb_utils.Logger


class TritonPythonModel:
    def initialize(self, args):
        log.log_info("from initialize")

    def execute(self, requests):
        log.log_info("info from execute")
        log.log_warn("warning from execute")
        log.log_error("error from execute")
        log.log_verbose("verbose from execute")
        log.log("info by level", log.INFO)  # the level as Triton's models name it
        log.log("error by level", log.LogLevel.ERROR)
        thread = threading.Thread(target=lambda: log.log_info("from a thread"))
        thread.start()
        thread.join()
        return [pb_utils.InferenceResponse([pb_utils.get_input_tensor_by_name(r, "IN")])
                for r in requests]
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("logging")
    (root / "chatty" / "1").mkdir(parents=True)
    (root / "chatty" / "config.pbtxt").write_text(CONFIG)
    (root / "chatty" / "1" / "model.py").write_text(MODEL)
    return root


def _line(severity: str, text: str) -> str:
    # Triton's layout: severity, date, time, thread, file:line] "message"
    return rf'^{severity}\d{{4}} [\d:.]+ +\d+ model\.py:\d+\] "{text}"$'


@pytest.mark.parametrize("mode", ["in-process", "process"])
@pytest.mark.parametrize("verbose", [0, 1])
def test_model_log_lines_reach_the_server_log(
    repo: Path, mode: str, verbose: int
) -> None:
    args = (
        f"--backend-config=python,execution-mode={mode}",
        f"--log-verbose={verbose}",
    )
    with run_server(repo, *args) as server:
        x = httpclient.InferInput("IN", [1], "FP32")
        x.set_data_from_numpy(np.ones(1, np.float32))
        httpclient.InferenceServerClient(server.http_url).infer("chatty", [x])
        assert server.wait_for_log("from a thread")
        text = server.log_text()
    expected = [
        ("I", "from initialize"),
        ("I", "info from execute"),
        ("W", "warning from execute"),
        ("E", "error from execute"),
        ("I", "from a thread"),
        ("I", "info by level"),
        ("E", "error by level"),
    ]
    for severity, message in expected:
        assert re.search(_line(severity, message), text, re.MULTILINE), message
    # Verbose lines only with --log-verbose, as Triton's.
    assert bool(re.search(_line("I", "verbose from execute"), text, re.MULTILINE)) == (
        verbose > 0
    )


def _infer(server: RunningServer) -> None:
    x = httpclient.InferInput("IN", [1], "FP32")
    x.set_data_from_numpy(np.ones(1, np.float32))
    httpclient.InferenceServerClient(server.http_url).infer("chatty", [x])


@pytest.mark.parametrize("mode", ["in-process", "process"])
def test_verbose_level_changed_through_the_wire(repo: Path, mode: str) -> None:
    """``POST /v2/logging`` reaches a model already running in a stub process
    (Triton's QA L0_backend_python/logging): its verbose lines appear once the
    level is raised and stop once it is lowered again."""
    verbose = re.compile(_line("I", "verbose from execute"), re.MULTILINE)
    args = (f"--backend-config=python,execution-mode={mode}", "--log-verbose=0")
    with run_server(repo, *args) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        _infer(server)
        assert server.wait_for_log("from a thread")
        assert not verbose.search(server.log_text())
        client.update_log_settings({"log_verbose_level": 1})
        _infer(server)
        assert server.wait_for_log("verbose from execute")
        client.update_log_settings({"log_verbose_level": 0})
        _infer(server)
        # Records arrive in order: once this call's last line is in, its verbose
        # line would be too.
        _wait_for_count(server, "error by level", 3)
        assert len(verbose.findall(server.log_text())) == 1


TAGGED_CONFIG = CONFIG.replace('"chatty"', '"tagged"')

TAGGED_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            tag = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            pb_utils.Logger.log_verbose(f"verbose {tag}")
            pb_utils.Logger.log_info(f"info {tag}")
        return [pb_utils.InferenceResponse([pb_utils.get_input_tensor_by_name(r, "IN")])
                for r in requests]
"""


@pytest.mark.parametrize("mode", ["in-process", "process"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_level_change_applies_to_the_next_request(
    tmp_path: Path, mode: str, protocol: str
) -> None:
    """Once ``/v2/logging`` has answered, the next request logs by the new level:
    a stub process takes the level before the change returns. (It once learned
    it a moment later, so the first request after raising it could miss its
    verbose line; CI saw that once.)"""
    (tmp_path / "tagged" / "1").mkdir(parents=True)
    (tmp_path / "tagged" / "config.pbtxt").write_text(TAGGED_CONFIG)
    (tmp_path / "tagged" / "1" / "model.py").write_text(TAGGED_MODEL)
    args = (f"--backend-config=python,execution-mode={mode}", "--log-verbose=0")
    with run_server(tmp_path, *args) as server:
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        for tag in range(1, 21):
            level = tag % 2
            if protocol == "http":
                http.update_log_settings({"log_verbose_level": level})
            else:
                grpc.update_log_settings({"log_verbose_level": level})
            x = httpclient.InferInput("IN", [1], "FP32")
            x.set_data_from_numpy(np.array([tag], np.float32))
            http.infer("tagged", [x])
            # Records arrive in order: with its info line in, a verbose one
            # would be too.
            assert server.wait_for_log(f'"info {tag}"'), server.log_text()
            assert (f'"verbose {tag}"' in server.log_text()) == bool(level), tag
        http.close()
        grpc.close()


def _wait_for_count(server: RunningServer, text: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while server.log_text().count(text) < count:
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.05)
