"""Stub processes over their lifetime, through the wire: custom metrics mirrored on
/metrics across a restart, stop within --exit-timeout-secs when finalize hangs, and
no stub left after the server is SIGKILLed."""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import pytest
from grpcutil import wait_until
from serverutil import run_server
from stubprocess import (
    PROCESS,
    alive,
    fault_parameter,
    infer_http,
    serves,
    stub_pids,
    write_model,
)
from tritonclient.utils import InferenceServerException

# Counts requests in a counter and a histogram; a negative INPUT0[0] exits the stub;
# FAULT "hang-finalize" makes finalize never return.
MODEL = """
import json
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.fault = config.get("parameters", {}).get("FAULT", {}).get("string_value")
        # The families are kept: a Metric of a deleted family is unusable (Triton).
        self.families = [
            pb_utils.MetricFamily("stub_calls", "Calls", pb_utils.MetricFamily.COUNTER),
            pb_utils.MetricFamily("stub_sizes", "Sizes", pb_utils.MetricFamily.HISTOGRAM),
            pb_utils.MetricFamily(
                "stub_later", "Set by a thread", pb_utils.MetricFamily.GAUGE
            ),
        ]
        self.calls = self.families[0].Metric(labels={"model": args["model_name"]})
        self.sizes = self.families[1].Metric(
            labels={"model": args["model_name"]}, buckets=[1.0, 100.0]
        )
        self.later = self.families[2].Metric(labels={})

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            text = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy()
            self.calls.increment(1)
            self.sizes.observe(float(x.size))
            if x.reshape(-1)[0] < 0:
                os._exit(1)
            if x.reshape(-1)[0] == 7:  # set from a thread once execute returned
                threading.Timer(0.2, self.later.set, args=(7.0,)).start()
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", (x * 2).astype(np.float32)),
                 pb_utils.Tensor("OUTPUT1", text)]))
        return out

    def finalize(self):
        while self.fault == "hang-finalize":
            time.sleep(0.05)
"""


def _scrape(url: str) -> list[str]:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return [
            line
            for line in reply.read().decode().splitlines()
            if line.startswith("stub_")
        ]


def test_custom_metrics_continue_across_a_restart(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "counted", PROCESS, MODEL)
    with run_server(repo) as server:
        infer_http(server, "counted")
        infer_http(server, "counted")
        with pytest.raises(InferenceServerException):
            infer_http(server, "counted", -1.0)
        wait_until(lambda: serves(server, "counted"), "the stub to restart")
        lines = _scrape(server.metrics_url)
    # The crashing call's update died with its stub; the restarted stub continues
    # the same series (one sample per label set, never reset).
    assert 'stub_calls{model="counted"} 3' in lines, lines
    assert 'stub_sizes_count{model="counted"} 3' in lines, lines
    assert 'stub_sizes_bucket{model="counted",le="100"} 3' in lines, lines
    assert sum(line.startswith("stub_calls{") for line in lines) == 1


def test_metric_set_by_a_models_thread_shows_without_another_request(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "later", PROCESS, MODEL)
    with run_server(repo) as server:
        infer_http(server, "later", 7.0)
        wait_until(
            lambda: "stub_later 7" in _scrape(server.metrics_url),
            "the thread's update on /metrics",
        )


def test_hung_finalize_is_cut_short_by_the_exit_timeout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "stuck", PROCESS + fault_parameter("hang-finalize"), MODEL)
    with run_server(repo, "--exit-timeout-secs=1") as server:
        (pid,) = stub_pids(server.process.pid)
        infer_http(server, "stuck")
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(60) == 0
    assert not alive(pid)
    assert "Stub process 'stuck_0' did not stop within 1 s" in server.log_text()


def test_no_stub_outlives_a_killed_server(tmp_path: Path) -> None:
    """SIGKILL of the server: zygote-forked stubs get their parent-death signal,
    a stub in its own interpreter (as for EXECUTION_ENV_PATH) sees its parent
    change; neither is left behind."""
    repo = tmp_path / "repo"
    write_model(repo, "a", PROCESS, MODEL)
    with (
        run_server(repo, env={"TRITONX_STUB_ZYGOTE": "0"}) as plain,
        run_server(repo) as forked,
    ):
        pids = stub_pids(plain.process.pid) + stub_pids(forked.process.pid)
        assert len(pids) == 2
        os.kill(forked.process.pid, signal.SIGKILL)
        os.kill(plain.process.pid, signal.SIGKILL)
        forked.process.wait()
        plain.process.wait()
        wait_until(lambda: not any(alive(p) for p in pids), "orphan stubs to exit")


# A non-decoupled model whose own thread (started in initialize) makes a BLS call once
# the first execute let it go; the second execute returns what that call got.
THREAD_BLS = """
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.go = threading.Event()
        self.result = None
        self.thread = threading.Thread(target=self.call, daemon=True)
        self.thread.start()

    def call(self):
        self.go.wait()
        x = np.array([[21.0, 1.0, 2.0, 3.0]], dtype=np.float32)
        text = np.array([[b"x", b"y"]], dtype=object)
        response = pb_utils.InferenceRequest(
            model_name="target",
            inputs=[pb_utils.Tensor("INPUT0", x), pb_utils.Tensor("TEXT", text)],
            requested_output_names=["OUTPUT0"],
        ).exec()
        if response.has_error():
            self.result = np.full((1, 4), -1.0, dtype=np.float32)
        else:
            self.result = pb_utils.get_output_tensor_by_name(response, "OUTPUT0").as_numpy()

    def execute(self, requests):
        out = []
        for r in requests:
            text = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy()
            if not self.go.is_set():
                self.go.set()
                value = np.zeros((1, 4), dtype=np.float32)
            else:
                self.thread.join(60)
                value = self.result
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", value.astype(np.float32)),
                pb_utils.Tensor("OUTPUT1", text)]))
        return out
"""


@pytest.mark.parametrize("mode", ["in-process", "process"])
def test_bls_from_a_non_decoupled_models_own_thread(tmp_path: Path, mode: str) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "target")  # in-process: OUTPUT0 = INPUT0 * 2
    extra = PROCESS if mode == "process" else ""
    write_model(repo, "caller", extra, model=THREAD_BLS)
    with run_server(repo) as server:
        first = infer_http(server, "caller")
        assert first.as_numpy("OUTPUT0").tolist() == [[0.0] * 4]  # type: ignore[attr-defined]
        second = infer_http(server, "caller")
        assert second.as_numpy("OUTPUT0").tolist() == [[42.0, 2.0, 4.0, 6.0]]  # type: ignore[attr-defined]
