"""Python models in stub processes (EXECUTION_MODE "process") through the wire: same
answers as in-process, crashes and hangs isolated and recovered, finalize on unload,
a stub's memory its own, no process left behind, and Triton's error text."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import (
    RunningServer,
    reference_command,
    run_either,
    run_reference,
    run_server,
)
from testmodels import venv_with_onlyinenv
from tritonclient.utils import InferenceServerException

PROCESS = 'parameters { key: "EXECUTION_MODE" value: { string_value: "process" } }\n'

CONFIG = """
name: "%s"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "TEXT" data_type: TYPE_STRING dims: [ 2 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT1" data_type: TYPE_STRING dims: [ 2 ] }
]
"""

# OUTPUT0 = INPUT0 * 2, OUTPUT1 = TEXT upper-cased. A negative INPUT0[0] triggers the
# fault named by the model's FAULT parameter; a request parameter "tag" comes back.
MODEL = """
import ctypes
import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.fault = config.get("parameters", {}).get("FAULT", {}).get("string_value")
        self.dir = args["model_repository"]
        self.kept = []
        if os.path.exists(os.path.join(self.dir, "broken")):
            raise RuntimeError("the model is broken")

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            text = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy()
            if x.reshape(-1)[0] < 0:
                if self.fault == "exit":
                    os._exit(1)
                if self.fault == "break":  # later initializes fail
                    open(os.path.join(self.dir, "broken"), "w").close()
                    os._exit(1)
                if self.fault == "segv":
                    ctypes.string_at(0)
                if self.fault == "hang":
                    while True:
                        time.sleep(0.05)
                if self.fault == "leak":
                    self.kept.append(np.ones(64 << 20, dtype=np.uint8))
            upper = np.array([t.upper() for t in text.reshape(-1)], dtype=object)
            params = json.loads(r.parameters())
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", (x * 2).astype(np.float32)),
                 pb_utils.Tensor("OUTPUT1", upper.reshape(text.shape))],
                parameters={"tag": params.get("tag", ""), "pid": os.getpid()}))
        return out

    def finalize(self):
        open(os.path.join(self.dir, "finalized-%d" % os.getpid()), "w").close()
"""


def _write(repo: Path, name: str, extra: str = "", model: str = MODEL) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(CONFIG % name + extra)
    (repo / name / "1" / "model.py").write_text(model)


def _fault(kind: str) -> str:
    return f'parameters {{ key: "FAULT" value: {{ string_value: "{kind}" }} }}\n'


def _inputs(mod: object, value: float) -> list[object]:
    x = np.full((1, 4), value, dtype=np.float32)
    text = np.array([[b"ab", b"cd"]], dtype=object)
    a = mod.InferInput("INPUT0", [1, 4], "FP32")  # type: ignore[attr-defined]
    a.set_data_from_numpy(x)
    b = mod.InferInput("TEXT", [1, 2], "BYTES")  # type: ignore[attr-defined]
    b.set_data_from_numpy(text)
    return [a, b]


def _http(server: RunningServer, model: str, value: float = 1.0) -> object:
    with httpclient.InferenceServerClient(server.http_url) as client:
        return client.infer(model, _inputs(httpclient, value), parameters={"tag": "h"})


def _grpc(server: RunningServer, model: str, value: float = 1.0) -> object:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        return client.infer(model, _inputs(grpcclient, value), parameters={"tag": "g"})


def _children(pid: int) -> dict[int, bytes]:
    """Child pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def _stub_pids(server_pid: int) -> list[int]:
    """The server's stub processes: its own children, or the zygote's."""
    pids = []
    for pid, cmdline in _children(server_pid).items():
        if b"--zygote" in cmdline:
            pids.extend(_children(pid))
        elif b"tritonx.backends.stub" in cmdline:
            pids.append(pid)
    return sorted(pids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _until(check: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def _serves(server: RunningServer, model: str) -> bool:
    try:
        _http(server, model)
    except InferenceServerException:
        return False
    return True


def test_same_answers_in_both_modes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _write(repo, "inproc")
    _write(repo, "stub", PROCESS)
    with run_server(repo) as server:
        for call in (_http, _grpc):
            a = call(server, "inproc", 1.5)
            b = call(server, "stub", 1.5)
            for name in ("OUTPUT0", "OUTPUT1"):
                np.testing.assert_array_equal(a.as_numpy(name), b.as_numpy(name))
            assert b.as_numpy("OUTPUT1").tolist() == [[b"AB", b"CD"]]
            # the tag parameter made the round trip; the pid says where it ran
            pa = a.get_response()["parameters"] if call is _http else None
            if pa is not None:
                pb = b.get_response()["parameters"]
                assert pa["tag"] == pb["tag"] == "h"
                assert pa["pid"] == server.process.pid
                assert pb["pid"] in _stub_pids(server.process.pid)


def test_backend_config_default_and_large_tensors(tmp_path: Path) -> None:
    """--backend-config=python,execution-mode=process moves every python model into a
    stub; tensors past the initial shared-memory region grow it."""
    repo = tmp_path / "repo"
    _write(repo, "big")
    cfg = (
        "--backend-config=python,execution-mode=process",
        "--backend-config=python,shm-default-byte-size=65536",
    )
    with run_server(repo, *cfg) as server:
        assert len(_stub_pids(server.process.pid)) == 1
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
    _write(repo, "crash", PROCESS + _fault(fault))
    _write(repo, "other", PROCESS)
    with run_server(repo) as server:
        before = _stub_pids(server.process.pid)
        with pytest.raises(InferenceServerException) as info:
            _http(server, "crash", -1.0)
        assert info.value.message() == "Stub process 'crash_0' is not healthy."
        assert info.value.status() == "500"
        assert _serves(server, "other")
        _until(lambda: _serves(server, "crash"), "the crashed stub to come back")
        with pytest.raises(InferenceServerException) as info:
            _grpc(server, "crash", -1.0)
        assert "Stub process 'crash_0' is not healthy." in info.value.message()
        assert info.value.status() == "StatusCode.INTERNAL"
        _until(lambda: _serves(server, "crash"), "the second restart")
        assert server.wait_for_log("restart 2"), server.log_text()
        after = _stub_pids(server.process.pid)
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
    _write(repo, "z", PROCESS)
    with run_server(repo) as server:
        assert _serves(server, "z")
        zygotes = [
            pid
            for pid, cmdline in _children(server.process.pid).items()
            if b"--zygote" in cmdline
        ]
        assert len(zygotes) == 1, _children(server.process.pid)
        stubs = _stub_pids(server.process.pid)
        for pid in [*zygotes, *stubs]:
            os.kill(pid, signal.SIGKILL)
        _until(lambda: _serves(server, "z"), "the stub to come back")
        assert set(_stub_pids(server.process.pid)).isdisjoint(stubs)
        log = server.log_text()
        assert "Traceback" not in log and "Exception in thread" not in log, log


def test_stub_that_cannot_restart_makes_the_model_unready(tmp_path: Path) -> None:
    import urllib.request

    repo = tmp_path / "repo"
    _write(repo, "flaky", PROCESS + _fault("break"))
    with run_server(repo) as server:
        with pytest.raises(InferenceServerException):
            _http(server, "flaky", -1.0)
        with httpclient.InferenceServerClient(server.http_url) as client:
            # each restart fails in initialize: the model stays down, and says so
            _until(lambda: "restart 3" in server.log_text(), "failed restarts")
            assert not client.is_model_ready("flaky")
            assert server.wait_for_log("the model is broken"), server.log_text()
            (repo / "flaky" / "broken").unlink()
            _until(lambda: client.is_model_ready("flaky"), "the model to recover")
        assert _serves(server, "flaky")
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
    _write(repo, "hang", PROCESS + _fault("hang") + timeout)
    with run_server(repo) as server:
        (pid,) = _stub_pids(server.process.pid)
        with pytest.raises(InferenceServerException) as info:
            _grpc(server, "hang", -1.0)
        assert "Stub process 'hang_0' is not healthy." in info.value.message()
        assert not _alive(pid)
        _until(lambda: _serves(server, "hang"), "the stub to restart")


def test_leak_stays_in_the_stub_and_a_memory_limit_restarts_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    limit = (
        'parameters { key: "MEMORY_LIMIT_BYTES" value: { string_value: "'
        + str(1 << 30)
        + '" } }\n'
    )
    _write(repo, "leak", PROCESS + _fault("leak") + limit)
    with run_server(repo) as server:

        def rss(pid: int) -> int:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
            raise AssertionError("no VmRSS")

        server_before = rss(server.process.pid)
        (stub,) = _stub_pids(server.process.pid)
        for _ in range(4):
            _http(server, "leak", -1.0)  # each call keeps 64 MiB in the stub
        assert rss(stub) > 200 << 20
        assert rss(server.process.pid) - server_before < 100 << 20
        for _ in range(30):  # past 1 GiB the stub fails and is replaced
            try:
                _http(server, "leak", -1.0)
            except InferenceServerException as exc:
                assert exc.message() == "Stub process 'leak_0' is not healthy."
                break
        else:
            raise AssertionError("the memory limit never stopped the leak")
        _until(lambda: _serves(server, "leak"), "the stub to restart")
        assert not _alive(stub)


def test_finalize_on_unload_and_no_stub_left_behind(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _write(repo, "m", PROCESS)
    _write(repo, "k", PROCESS)
    with run_server(
        repo, "--model-control-mode=explicit", "--load-model=m", "--load-model=k"
    ) as server:
        pids = _stub_pids(server.process.pid)
        assert len(pids) == 2
        with httpclient.InferenceServerClient(server.http_url) as client:
            client.unload_model("m")
            _until(lambda: not client.is_model_ready("m"), "the unload")
        finalized = list((repo / "m").glob("finalized-*"))
        assert len(finalized) == 1
        gone = int(finalized[0].name.split("-")[1])
        _until(lambda: not _alive(gone), "the stub to exit")
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        # the parent-death signal ends the stub of the model still loaded
        _until(lambda: not any(_alive(p) for p in pids), "orphan stubs to exit")


@pytest.mark.skipif(reference_command() is None, reason="TRITONX_REFERENCE_CMD unset")
def test_crash_error_matches_triton(tmp_path: Path) -> None:
    triton_repo = tmp_path / "triton"
    ours_repo = tmp_path / "ours"
    _write(triton_repo, "crash", _fault("exit"))
    _write(ours_repo, "crash", PROCESS + _fault("exit"))
    messages = []
    for runner, repo in ((run_reference, triton_repo), (run_server, ours_repo)):
        with runner([repo]) as server:
            for call in (_http, _grpc):
                with pytest.raises(InferenceServerException) as info:
                    call(server, "crash", -1.0)
                messages.append((info.value.status(), info.value.message()))
    assert messages[:2] == messages[2:]


ENV_MODEL = """
import onlyinenv
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", np.full((1, 4), onlyinenv.VALUE, np.float32)),
                pb_utils.Tensor("OUTPUT1", np.array([[b"a", b"b"]], dtype=object)),
            ])
            for r in requests
        ]
"""


def _env_path(value: str) -> str:
    return f'parameters {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{value}" }} }}\n'


def test_model_in_its_own_environment(tmp_path: Path) -> None:
    """EXECUTION_ENV_PATH names a venv whose package the server's environment
    lacks; the model imports it in its stub."""
    env = tmp_path / "env"
    venv_with_onlyinenv(env, 42.0)
    repo = tmp_path / "repo"
    _write(repo, "envmodel", _env_path(str(env)), model=ENV_MODEL)
    with run_server(repo) as server:
        result = _grpc(server, "envmodel")
        assert result.as_numpy("OUTPUT0").tolist() == [[42.0] * 4]


def test_model_in_a_packed_environment(tmp_path: Path) -> None:
    """EXECUTION_ENV_PATH names a packed environment beside the model, as Triton's
    docs show for conda-pack archives ("$$TRITON_MODEL_DIRECTORY/env.tar.gz"): it
    is unpacked once, and the stub runs its interpreter and imports its packages."""
    import tarfile

    env = tmp_path / "env"
    module = venv_with_onlyinenv(env, 7.0)
    repo = tmp_path / "repo"
    path = _env_path("$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    _write(repo, "packed", path, model=ENV_MODEL)
    with tarfile.open(repo / "packed" / "env.tar.gz", "w:gz") as archive:
        archive.add(env, arcname=".")  # conda-pack's layout: bin/, lib/ at the top
    module.unlink()  # only the archive's copy can answer
    with run_server(repo) as server:
        result = _http(server, "packed")
        assert result.as_numpy("OUTPUT0").tolist() == [[7.0] * 4]
    assert (repo / "packed" / "env.unpacked" / "bin" / "python3").exists()


def test_packed_environment_in_a_read_only_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive whose directory cannot be written (a read-only repository mount)
    is unpacked in the temporary space instead, nothing written beside it.
    (Tests run as root here, so the directory's mode cannot show it: the check
    itself is made to say read-only.)"""
    import tarfile

    from tritonx.backends.stub import environment

    env = tmp_path / "env"
    venv_with_onlyinenv(env, 3.0)
    shelf = tmp_path / "read-only"
    shelf.mkdir()
    archive = shelf / "env.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        packed.add(env, arcname=".")
    monkeypatch.setattr(environment.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    real_access = os.access
    monkeypatch.setattr(
        environment.os,
        "access",
        lambda path, mode: False if Path(path) == shelf else real_access(path, mode),
    )
    python = environment.interpreter(str(archive), tmp_path, "packed")
    assert python.is_file()
    assert python.is_relative_to(tmp_path / "tmp" / "tritonx-envs")
    assert [p.name for p in shelf.iterdir()] == ["env.tar.gz"]


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
    _write(repo, "dies", PROCESS, model=model)
    with run_server(repo, "--exit-on-error=false") as server:
        _until(lambda: "failed to start" in server.log_text(), "the load error")
        log = server.log_text()
        assert "Traceback" in log
        assert "KeyboardInterrupt: stub-startup-marker" in log
        assert not _stub_pids(server.process.pid)


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
    _write(repo, "inproc")
    _write(repo, "stub", PROCESS)
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


@pytest.mark.parametrize("server_kind", ["tritonx", "reference"])
def test_a_missing_environment_fails_the_load_with_tritons_text(
    tmp_path: Path, server_kind: str
) -> None:
    """EXECUTION_ENV_PATH naming nothing, or a directory that is no environment: the
    model is UNAVAILABLE with the reason Triton gives, word for word."""
    repo = tmp_path / "repo"
    _write(repo, "missing", _env_path("$$TRITON_MODEL_DIRECTORY/missing.tar.gz"))
    _write(repo, "notenv", _env_path("$$TRITON_MODEL_DIRECTORY/notenv"))
    (repo / "notenv" / "notenv" / "bin").mkdir(parents=True)
    args = ("--exit-on-error=false", "--strict-readiness=false")
    with (
        run_either(server_kind, repo, *args) as server,
        httpclient.InferenceServerClient(server.http_url) as client,
    ):
        reasons = {e["name"]: e["reason"] for e in client.get_model_repository_index()}
    assert reasons == {
        "missing": "Internal: Failed to get the canonical path for "
        f"{repo}/missing/missing.tar.gz.",
        "notenv": f"Internal: Path {repo}/notenv/notenv/bin/activate does not exist. "
        "The Python environment should contain an 'activate' script.",
    }
