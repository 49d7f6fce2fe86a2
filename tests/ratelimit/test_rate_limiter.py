"""The rate limiter (--rate-limit=execution_count) end to end: two models whose
instances need the one copy of a shared resource never execute at once, while
without the limiter they do; flag and resource-count errors use Triton's words.

Overlap is observed, not timed: an execution leaves a marker file named after its
model and looks for the other model's marker for a while before it leaves (removing
its own; once it saw the other it stays until the other saw it too). Seeing the
other's marker proves both were executing at the same moment; under the limiter the
second one cannot start before the first has left.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import REFERENCE_CMD_ENV, reference_command, run_reference, run_server

# OUTPUT0 = [1] when the other model's marker showed up during this execution.
OVERLAP_MODEL = """
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        self.dir = os.path.dirname(args["model_repository"])

    def execute(self, requests):
        mine = os.path.join(self.dir, "in-" + self.name)
        open(mine, "w").close()
        seen = 0.0
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            names = os.listdir(self.dir)
            if not seen and any(
                    f.startswith("in-") and f != "in-" + self.name for f in names):
                seen = 1.0
                open(os.path.join(self.dir, "saw-" + self.name), "w").close()
            # Once seen, stay until the other has seen this one too.
            if seen and any(
                    f.startswith("saw-") and f != "saw-" + self.name for f in names):
                break
            time.sleep(0.01)
        os.remove(mine)
        out = np.array([seen], dtype=np.float32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out)])
                for _ in requests]
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU
  rate_limiter {{ resources [ {{ name: "R" count: {count} {glob} }} ] priority: 1 }}
}} ]
"""

# Long enough that two executions that can overlap always do (each waits for the
# other); short enough that the limited run (one wait after the other) stays short.
WAIT_S = 3.0


def _repo(root: Path, counts: dict[str, int], glob: bool = False) -> Path:
    repo = root / "repo"
    for name, count in counts.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(
            CONFIG.format(name=name, count=count, glob="global: true" if glob else "")
        )
        (repo / name / "1" / "model.py").write_text(
            OVERLAP_MODEL.replace("WAIT_S", str(WAIT_S))
        )
    return repo


def _run_both(http_url: str, grpc_url: str) -> list[float]:
    """One request to each model at the same time (A over HTTP, B over gRPC);
    returns what each saw."""
    seen: list[float] = [-1.0, -1.0]
    data = np.array([1.0], dtype=np.float32)

    def via_http() -> None:
        client = httpclient.InferenceServerClient(http_url, network_timeout=60)
        inp = httpclient.InferInput("INPUT0", [1], "FP32")
        inp.set_data_from_numpy(data)
        seen[0] = float(client.infer("a", [inp]).as_numpy("OUTPUT0")[0])
        client.close()

    def via_grpc() -> None:
        client = grpcclient.InferenceServerClient(grpc_url)
        inp = grpcclient.InferInput("INPUT0", [1], "FP32")
        inp.set_data_from_numpy(data)
        seen[1] = float(client.infer("b", [inp]).as_numpy("OUTPUT0")[0])
        client.close()

    threads = [threading.Thread(target=via_http), threading.Thread(target=via_grpc)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return seen


@pytest.mark.parametrize("glob", [False, True], ids=["device", "global"])
def test_shared_resource_serializes_models(tmp_path: Path, glob: bool) -> None:
    repo = _repo(tmp_path, {"a": 1, "b": 1}, glob)
    with run_server(repo, "--rate-limit=execution_count") as server:
        assert _run_both(server.http_url, server.grpc_url) == [0.0, 0.0]
        # The wait counted as queue time: each model ran once, both succeeded.
        client = httpclient.InferenceServerClient(server.http_url)
        for name in ("a", "b"):
            stats = client.get_inference_statistics(name)["model_stats"][0]
            assert stats["execution_count"] == 1
            assert stats["inference_stats"]["success"]["count"] == 1
        client.close()


def test_without_limiter_models_overlap(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"a": 1, "b": 1})
    with run_server(repo) as server:  # --rate-limit defaults to off
        assert _run_both(server.http_url, server.grpc_url) == [1.0, 1.0]


def test_enough_copies_let_models_overlap(tmp_path: Path) -> None:
    # Two copies given on the command line: both instances fit at once.
    repo = _repo(tmp_path, {"a": 1, "b": 1})
    with run_server(
        repo, "--rate-limit=execution_count", "--rate-limit-resource=R:2"
    ) as server:
        assert _run_both(server.http_url, server.grpc_url) == [1.0, 1.0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tritonx", "--model-repository=/nonexistent", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--rate-limit=foo", 'Bad option: "--rate-limit".\ninvalid argument for '),
        (
            "--rate-limit-resource=R1",
            'Bad option: "--rate-limit-resource".\n--rate-limit-resource option '
            "format is '<resource_name>:<count>:<device>' or '<resource_name>:<count>'"
            ". Got R1",
        ),
        (
            "--rate-limit-resource=R1:2:0:1",
            "--rate-limit-resource option format is '<resource_name>:<count>:<device>'"
            " or '<resource_name>:<count>'. Got R1:2:0:1",
        ),
        (
            "--rate-limit-resource=R1:x",
            'Bad option: "--rate-limit-resource".\nInvalid option value. Got x',
        ),
    ],
)
def test_flag_errors(flag: str, message: str) -> None:
    result = _cli(flag)
    assert result.returncode == 1
    assert message in result.stderr


def _load_error(server_log: str) -> bool:
    return (
        'Resource count for "R" is limited to 1 which will prevent scheduling of one '
        "or more model instances, the minimum required count is 2" in server_log
    )


def test_too_few_copies_fail_the_load(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"a": 2})
    with run_server(
        repo,
        "--rate-limit=execution_count",
        "--rate-limit-resource=R:1",
        expect_ready=False,
    ) as server:
        server.process.wait(timeout=60)
    assert server.process.returncode == 1
    assert _load_error(server.log_text())


def test_off_ignores_resource_counts(tmp_path: Path) -> None:
    # As in Triton, resources only matter with the limiter on.
    repo = _repo(tmp_path, {"a": 2})
    with run_server(repo, "--rate-limit-resource=R:1") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_model_ready("a")
        client.close()


@pytest.mark.skipif(reference_command() is None, reason=f"{REFERENCE_CMD_ENV} unset")
def test_reference_same_load_error_and_serialization(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "small", {"a": 2})
    with (
        pytest.raises(RuntimeError) as failed,
        run_reference(
            [repo], "--rate-limit=execution_count", "--rate-limit-resource=R:1"
        ),
    ):
        pass
    assert _load_error(str(failed.value))
    repo = _repo(tmp_path / "pair", {"a": 1, "b": 1})
    with run_reference([repo], "--rate-limit=execution_count") as server:
        assert _run_both(server.http_url, server.grpc_url) == [0.0, 0.0]
