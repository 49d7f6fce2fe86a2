"""Python models in stub processes (EXECUTION_MODE "process") through the wire: same
answers as in-process, crashes and hangs isolated and recovered, finalize on unload,
a stub's memory its own, no process left behind, and Triton's error text."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import (
    reference_command,
    run_either,
    run_reference,
    run_server,
)
from stubprocess import (
    MODEL,
    PROCESS,
    alive,
    child_processes,
    fault_parameter,
    infer_grpc,
    infer_http,
    serves,
    stub_pids,
    write_model,
)
from tritonclient.utils import InferenceServerException


def test_same_answers_in_both_modes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "inproc")
    write_model(repo, "stub", PROCESS)
    with run_server(repo) as server:
        for call in (infer_http, infer_grpc):
            a = call(server, "inproc", 1.5)
            b = call(server, "stub", 1.5)
            for name in ("OUTPUT0", "OUTPUT1"):
                np.testing.assert_array_equal(a.as_numpy(name), b.as_numpy(name))
            assert b.as_numpy("OUTPUT1").tolist() == [[b"AB", b"CD"]]
            # the tag parameter made the round trip; the pid says where it ran
            pa = a.get_response()["parameters"] if call is infer_http else None
            if pa is not None:
                pb = b.get_response()["parameters"]
                assert pa["tag"] == pb["tag"] == "h"
                assert pa["pid"] == server.process.pid
                assert pb["pid"] in stub_pids(server.process.pid)


def test_backend_config_default_and_large_tensors(tmp_path: Path) -> None:
    """--backend-config=python,execution-mode=process moves every python model into a
    stub; tensors past the initial shared-memory region grow it."""
    repo = tmp_path / "repo"
    write_model(repo, "big")
    cfg = (
        "--backend-config=python,execution-mode=process",
        "--backend-config=python,shm-default-byte-size=65536",
    )
    with run_server(repo, *cfg) as server:
        assert len(stub_pids(server.process.pid)) == 1
        x = np.random.default_rng(0).random((8, 4), dtype=np.float32)
        text = np.array([[b"x" * 50000, b"y"]] * 8, dtype=object)
        a = httpclient.InferInput("INPUT0", [8, 4], "FP32")
        a.set_data_from_numpy(x)
        b = httpclient.InferInput("TEXT", [8, 2], "BYTES")
        b.set_data_from_numpy(text)
        with httpclient.InferenceServerClient(server.http_url) as client:
            for _ in range(2):
                result = client.infer("big", [a, b])
                np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x * 2)
                assert result.as_numpy("OUTPUT1")[0, 0] == b"X" * 50000


@pytest.mark.parametrize("fault", ["exit", "segv"])
def test_crash_fails_the_request_and_the_stub_restarts(
    tmp_path: Path, fault: str
) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "crash", PROCESS + fault_parameter(fault))
    write_model(repo, "other", PROCESS)
    with run_server(repo) as server:
        before = stub_pids(server.process.pid)
        with pytest.raises(InferenceServerException) as info:
            infer_http(server, "crash", -1.0)
        assert info.value.message() == "Stub process 'crash_0' is not healthy."
        assert info.value.status() == "500"
        assert serves(server, "other")
        wait_until(lambda: serves(server, "crash"), "the crashed stub to come back")
        with pytest.raises(InferenceServerException) as info:
            infer_grpc(server, "crash", -1.0)
        assert "Stub process 'crash_0' is not healthy." in info.value.message()
        assert info.value.status() == "StatusCode.INTERNAL"
        wait_until(lambda: serves(server, "crash"), "the second restart")
        assert server.wait_for_log("restart 2"), server.log_text()
        after = stub_pids(server.process.pid)
        assert len(after) == 2 and len(set(after) - set(before)) == 1, (
            before,
            after,
            server.log_text(),
        )


def test_zygote_killed_with_its_stubs_recovers(tmp_path: Path) -> None:
    """SIGKILL of the zygote and the stubs it forked (as a kill of the process
    group does): the stubs' deaths are handled without a traceback (their exit
    status has nobody to ask), and a new zygote restarts them."""
    repo = tmp_path / "repo"
    write_model(repo, "z", PROCESS)
    with run_server(repo) as server:
        assert serves(server, "z")
        zygotes = [
            pid
            for pid, cmdline in child_processes(server.process.pid).items()
            if b"--zygote" in cmdline
        ]
        assert len(zygotes) == 1, child_processes(server.process.pid)
        stubs = stub_pids(server.process.pid)
        for pid in [*zygotes, *stubs]:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: serves(server, "z"), "the stub to come back")
        assert set(stub_pids(server.process.pid)).isdisjoint(stubs)
        log = server.log_text()
        assert "Traceback" not in log and "Exception in thread" not in log, log


def test_stub_that_cannot_restart_makes_the_model_unready(tmp_path: Path) -> None:
    import urllib.request

    repo = tmp_path / "repo"
    write_model(repo, "flaky", PROCESS + fault_parameter("break"))
    with run_server(repo) as server:
        with pytest.raises(InferenceServerException):
            infer_http(server, "flaky", -1.0)
        with httpclient.InferenceServerClient(server.http_url) as client:
            # each restart fails in initialize: the model stays down, and says so
            wait_until(lambda: "restart 3" in server.log_text(), "failed restarts")
            assert not client.is_model_ready("flaky")
            assert server.wait_for_log("the model is broken"), server.log_text()
            (repo / "flaky" / "broken").unlink()
            wait_until(lambda: client.is_model_ready("flaky"), "the model to recover")
        assert serves(server, "flaky")
        with urllib.request.urlopen(server.metrics_url) as reply:
            metrics = reply.read().decode()
        line = next(
            m
            for m in metrics.splitlines()
            if m.startswith('tritonx_python_stub_restarts{model="flaky"')
        )
        assert float(line.split()[-1]) >= 3


def test_hung_stub_is_killed_after_the_execution_timeout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    timeout = 'parameters { key: "EXECUTION_TIMEOUT" value: { string_value: "1" } }\n'
    write_model(repo, "hang", PROCESS + fault_parameter("hang") + timeout)
    with run_server(repo) as server:
        (pid,) = stub_pids(server.process.pid)
        with pytest.raises(InferenceServerException) as info:
            infer_grpc(server, "hang", -1.0)
        assert "Stub process 'hang_0' is not healthy." in info.value.message()
        assert not alive(pid)
        wait_until(lambda: serves(server, "hang"), "the stub to restart")


def test_leak_stays_in_the_stub_and_a_memory_limit_restarts_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    limit = (
        'parameters { key: "MEMORY_LIMIT_BYTES" value: { string_value: "'
        + str(1 << 30)
        + '" } }\n'
    )
    write_model(repo, "leak", PROCESS + fault_parameter("leak") + limit)
    with run_server(repo) as server:

        def rss(pid: int) -> int:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
            raise AssertionError("no VmRSS")

        server_before = rss(server.process.pid)
        (stub,) = stub_pids(server.process.pid)
        for _ in range(4):
            infer_http(server, "leak", -1.0)  # each call keeps 64 MiB in the stub
        assert rss(stub) > 200 << 20
        assert rss(server.process.pid) - server_before < 100 << 20
        for _ in range(30):  # past 1 GiB the stub fails and is replaced
            try:
                infer_http(server, "leak", -1.0)
            except InferenceServerException as exc:
                assert exc.message() == "Stub process 'leak_0' is not healthy."
                break
        else:
            raise AssertionError("the memory limit never stopped the leak")
        wait_until(lambda: serves(server, "leak"), "the stub to restart")
        assert not alive(stub)


def test_finalize_on_unload_and_no_stub_left_behind(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "m", PROCESS)
    write_model(repo, "k", PROCESS)
    with run_server(
        repo, "--model-control-mode=explicit", "--load-model=m", "--load-model=k"
    ) as server:
        pids = stub_pids(server.process.pid)
        assert len(pids) == 2
        with httpclient.InferenceServerClient(server.http_url) as client:
            client.unload_model("m")
            # Answered once "m" stops serving; finalize follows (as in Triton).
            wait_until(
                lambda: any((repo / "m").glob("finalized-*")), "the model's finalize"
            )
        finalized = list((repo / "m").glob("finalized-*"))
        assert len(finalized) == 1
        gone = int(finalized[0].name.split("-")[1])
        wait_until(lambda: not alive(gone), "the stub to exit")
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        # the parent-death signal ends the stub of the model still loaded
        wait_until(lambda: not any(alive(p) for p in pids), "orphan stubs to exit")


@pytest.mark.skipif(reference_command() is None, reason="TRITONX_REFERENCE_CMD unset")
def test_crash_error_matches_triton(tmp_path: Path) -> None:
    triton_repo = tmp_path / "triton"
    ours_repo = tmp_path / "ours"
    write_model(triton_repo, "crash", fault_parameter("exit"))
    write_model(ours_repo, "crash", PROCESS + fault_parameter("exit"))
    messages = []
    for runner, repo in ((run_reference, triton_repo), (run_server, ours_repo)):
        with runner([repo]) as server:
            for call in (infer_http, infer_grpc):
                with pytest.raises(InferenceServerException) as info:
                    call(server, "crash", -1.0)
                messages.append((info.value.status(), info.value.message()))
    assert messages[:2] == messages[2:]


ODD_CONFIG = """
name: "%s"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""
# X 0: a good answer; 1: a dtype no wire datatype carries; 2: an error response;
# 3: a response parameter of a type parameters cannot carry (fails the execute).
ODD_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            code = int(pb_utils.get_input_tensor_by_name(r, "X").as_numpy()[0])
            if code == 0:
                out.append(pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUT", np.array([b"ok"], dtype=object))],
                    parameters={"n": 1}))
            elif code == 1:
                value = np.array([1j], dtype=np.complex64)
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", value)]))
            elif code == 2:
                out.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("no answer for this one")))
            else:
                out.append(pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUT", np.array([b"x"], dtype=object))],
                    parameters={"bad": [1, 2]}))
        return out
"""


def test_odd_outputs_answer_alike_in_both_modes(tmp_path: Path) -> None:
    """What a model returns becomes a response by one rule in both modes (the stub
    hands its output mappings to the same C++ conversion as in-process execution):
    same answers, same error texts and codes, and the server keeps serving."""
    repo = tmp_path / "repo"
    for name, extra in (("odd_inproc", ""), ("odd_stub", PROCESS)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(ODD_CONFIG % name + extra)
        (repo / name / "1" / "model.py").write_text(ODD_MODEL)

    def answer(
        client: httpclient.InferenceServerClient, model: str, code: int
    ) -> object:
        x = httpclient.InferInput("X", [1], "FP32")
        x.set_data_from_numpy(np.array([code], np.float32))
        try:
            result = client.infer(model, [x])
        except InferenceServerException as exc:
            return (exc.status(), str(exc.message()).replace(model, "odd"))
        return (
            result.as_numpy("OUT").tolist(),
            result.get_response().get("parameters"),
        )

    with run_server(repo) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        for code in range(4):
            assert answer(client, "odd_inproc", code) == answer(
                client, "odd_stub", code
            )
        assert answer(client, "odd_stub", 0) == ([b"ok"], {"n": 1})
        assert answer(client, "odd_stub", 2) == ("500", "no answer for this one")
        # Refused when the response is built (pb_utils' own check), in execute.
        assert answer(client, "odd_stub", 3)[1].startswith(
            "Failed to process the request(s) for model 'odd_0', message: "
            "TritonModelException: Expect parameters values to have type "
            "bool/int/str, found type <class 'list'>"
        )
        client.close()


def test_a_stub_that_dies_starting_says_why(tmp_path: Path) -> None:
    """An exception that escapes the stub itself (here a BaseException from
    initialize, which the model wrapper does not catch) reaches the server's log
    with its traceback, not only "failed to start"."""
    repo = tmp_path / "repo"
    model = MODEL.replace(
        "        self.kept = []\n",
        "        self.kept = []\n        raise KeyboardInterrupt('stub-startup-marker')\n",
    )
    write_model(repo, "dies", PROCESS, model=model)
    with run_server(repo, "--exit-on-error=false") as server:
        wait_until(lambda: "failed to start" in server.log_text(), "the load error")
        log = server.log_text()
        assert "Traceback" in log
        assert "KeyboardInterrupt: stub-startup-marker" in log
        assert not stub_pids(server.process.pid)


@pytest.mark.parametrize("server_kind", ["tritonx", "reference"])
@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        # Triton's own text here is a C++ exception's ("stol"); tritonx names the key.
        ("shm-default-byte-size=abc", None),
        (
            "shm-growth-byte-size=-1",
            "Invalid argument: shm-growth-byte-size can't be smaller than or equal "
            "to zero.",
        ),
        (
            "stub-timeout-seconds=0",
            "Invalid argument: stub-timeout-seconds can't be smaller than or equal "
            "to zero.",
        ),
    ],
)
def test_python_settings_triton_refuses_fail_every_python_model(
    tmp_path: Path, server_kind: str, setting: str, reason: str | None
) -> None:
    """A --backend-config=python value Triton's python backend refuses fails the
    load of every python model, in-process or not, with "Invalid argument" (never an
    internal error), and the server goes on."""
    repo = tmp_path / "repo"
    write_model(repo, "inproc")
    write_model(repo, "stub", PROCESS)
    args = (
        f"--backend-config=python,{setting}",
        "--exit-on-error=false",
        "--strict-readiness=false",
    )
    with (
        run_either(server_kind, repo, *args) as server,
        httpclient.InferenceServerClient(server.http_url) as client,
    ):
        index = client.get_model_repository_index()
    assert {e["name"]: e["state"] for e in index} == {
        "inproc": "UNAVAILABLE",
        "stub": "UNAVAILABLE",
    }
    for entry in index:
        if reason is not None:
            assert entry["reason"] == reason
        else:
            assert entry["reason"].startswith("Invalid argument: "), entry["reason"]
            if server_kind == "tritonx":
                assert "'shm-default-byte-size'" in entry["reason"]
