"""Start a real ``tritonx-server`` in a subprocess for end-to-end tests.

The server is started with ports 0 and the bound ports are read back from its log
lines, which use Triton's wording ("Started HTTPService at 0.0.0.0:PORT", ...).
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

_PORT_LINES = {
    "http": re.compile(r"Started HTTPService at [^:]+:(\d+)"),
    "grpc": re.compile(r"Started GRPCInferenceService at [^:]+:(\d+)"),
    "metrics": re.compile(r"Started Metrics Service at [^:]+:(\d+)"),
}


# How the reference Triton reports a crash of its own (SIGABRT from an uncaught
# boost::interprocess::lock_exception in its python backend, also before its signal
# handlers are installed; SIGSEGV), which it does
# now and then on this machine under load. Every such line a reference server of
# this process logs is kept in ``reference_crashes``: tests/conftest.py turns the
# failure of a test during which a reference crashed (or whose reference server had
# crashed) into a skip, as there was nothing left to compare with.
REFERENCE_CRASH = re.compile(
    r"Signal \((6|11)\) received|terminate called after throwing"
)
reference_crashes: list[str] = []
# Differential tests leave requests Triton never answers (a backlogged sequence, an
# ensemble step it drops); at stop it waits the whole exit timeout for them (30 s by
# default) before exiting. A test that cares about the drain passes its own.
REFERENCE_EXIT_TIMEOUT = "--exit-timeout-secs=5"


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    ports: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    reference: bool = False  # the reference Triton (run_reference)

    def crashed_reference(self) -> bool:
        return self.reference and any(REFERENCE_CRASH.search(line) for line in self.log)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def log_text(self) -> str:
        return "".join(self.log)

    def pending_requests(self, model: str) -> int:
        """``nv_inference_pending_request_count`` of version 1 of ``model`` (-1
        when the metric is absent): requests the server holds for it."""
        import urllib.request

        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        match = re.search(
            rf'^nv_inference_pending_request_count{{model="{model}",version="1"}} '
            r"(\d+)",
            text,
            re.M,
        )
        return int(match.group(1)) if match else -1

    def wait_for_log(self, text: str, timeout: float = 30.0) -> bool:
        """Whether ``text`` shows up in the log within ``timeout``: the server
        writes before it answers, but the log reaches the test through a pipe
        and a reader thread, a moment later."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def _pump(server: RunningServer) -> None:
    assert server.process.stdout is not None
    for line in server.process.stdout:
        server.log.append(line)
        if server.reference and REFERENCE_CRASH.search(line):
            reference_crashes.append(line.strip())


def server_command(
    repos: Sequence[Path | str],
    args: Sequence[str],
    launcher: Sequence[str] | None = None,
) -> list[str]:
    cmd = list(launcher) if launcher else [sys.executable, "-m", "tritonx"]
    for repo in repos:
        cmd.append(f"--model-repository={repo}")
    have = " ".join(args)
    for flag in ("--http-port", "--grpc-port", "--metrics-port"):
        if flag not in have:
            cmd.append(f"{flag}=0")
    if "--http-address" not in have:
        cmd.append("--http-address=127.0.0.1")
    if "--grpc-address" not in have:
        cmd.append("--grpc-address=127.0.0.1")
    cmd.extend(args)
    return cmd


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a test server runs in: the installed tritonx, or the source
    tree's when TRITONX_TEST_SOURCE_TREE is set (the developer loop)."""
    env = dict(os.environ)
    if os.environ.get("TRITONX_TEST_SOURCE_TREE"):
        src = str(Path(__file__).resolve().parents[1] / "python")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


@contextmanager
def run_server(
    repos: Sequence[Path | str] | Path | str,
    *args: str,
    timeout: float = 60.0,
    expect_ready: bool = True,
    env: dict[str, str] | None = None,
    services: Sequence[str] | None = None,
    launcher: Sequence[str] | None = None,
) -> Iterator[RunningServer]:
    """Run tritonx-server until the block exits; waits for the ports to be bound.

    ``services`` names the ports to wait for (default: every one not turned off);
    ``launcher`` replaces ``python -m tritonx`` (e.g. another venv's tritonx-server)."""
    if isinstance(repos, (str, Path)):
        repos = [repos]
    full_env = server_env(env)
    process = subprocess.Popen(
        server_command(repos, args, launcher),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
    )
    server = RunningServer(process)
    pump = threading.Thread(target=_pump, args=(server,), daemon=True)
    pump.start()
    try:
        wanted = {
            name
            for name, flag in (
                ("http", "--allow-http=false"),
                ("grpc", "--allow-grpc=false"),
                ("metrics", "--allow-metrics=false"),
            )
            if flag not in args
        }
        if services is not None:
            wanted = set(services)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = server.log_text()
            for name in wanted:
                match = _PORT_LINES[name].search(text)
                if match:
                    server.ports[name] = int(match.group(1))
            if wanted <= server.ports.keys():
                break
            if process.poll() is not None:
                if expect_ready:
                    raise RuntimeError(f"server exited early:\n{server.log_text()}")
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(
                f"server did not start in {timeout}s:\n{server.log_text()}"
            )
        yield server
    finally:
        terminate(process)
        pump.join(timeout=5)


def terminate(process: subprocess.Popen[Any], timeout: float = 30.0) -> int:
    """SIGTERM a server still running, wait ``timeout`` (then kill); its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


def infer_json(
    server: RunningServer,
    model: str,
    inputs: list[dict[str, object]],
    timeout: float = 60.0,
) -> tuple[int, dict[str, object]]:
    """POST a KServe v2 JSON infer request; returns (HTTP status, parsed body).

    Plain http.client rather than tritonclient.http, whose gevent pool misbehaves
    when clients are created on many threads (greenlet errors at interpreter exit).
    """
    import http.client
    import json

    conn = http.client.HTTPConnection(
        "127.0.0.1", server.ports["http"], timeout=timeout
    )
    try:
        conn.request(
            "POST",
            f"/v2/models/{model}/infer",
            json.dumps({"inputs": inputs}),
            {"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def load_over_http(
    server: RunningServer, model: str, timeout: float = 120.0
) -> tuple[int, str | None]:
    """POST /v2/repository/models/<model>/load: (HTTP status, None) on success, or
    (status, the error text)."""
    import json
    import urllib.error
    import urllib.request

    url = f"http://{server.http_url}/v2/repository/models/{model}/load"
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, None
    except urllib.error.HTTPError as error:
        return error.code, str(json.loads(error.read())["error"])


def client_inputs(client_module: Any, tensors: dict[str, Any]) -> list[Any]:
    """tritonclient InferInputs holding the numpy arrays ``tensors`` (by input
    name), for ``client_module`` tritonclient.http or tritonclient.grpc."""
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, data in tensors.items():
        tensor = client_module.InferInput(
            name, list(data.shape), np_to_triton_dtype(data.dtype)
        )
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


# perf_analyzer's measurement flags for a short, bounded run in tests (counts, not
# time windows; a shared machine rarely meets the default stability band). Not
# --request-count N: perf_analyzer starts its workers (exactly N requests), then
# empties its request records and waits for N of them; an answer that comes in
# between is dropped and the wait never ends. The faster the server, the likelier
# (on a loaded machine: 6 of 69 runs against tritonx, 0 of 149 against Triton 2.51).
SHORT_MEASUREMENT = [
    "--measurement-mode",
    "count_windows",
    "--measurement-request-count",
    "50",
    # Up to 10 windows of 50 requests: a busy machine needs more than 3 to find
    # three in a row within 100% of each other; a quiet one stops after 3.
    "--max-trials",
    "10",
    "--stability-percentage",
    "100",
]
# ... at concurrency 2.
SHORT_PERF_RUN = ["--concurrency-range", "2", *SHORT_MEASUREMENT]
# perf_analyzer's words when its windows never agreed, which a loaded runner can
# cause even with SHORT_MEASUREMENT's 100 % band (seen in CI).
PERF_UNSTABLE = "Failed to obtain stable measurement"


def run_perf_analyzer(
    command: Sequence[str], timeout: float = 180, retry_unstable: bool = True
) -> subprocess.CompletedProcess[str]:
    """One perf_analyzer run; with ``retry_unstable``, up to two more when it
    failed only because its measurement never stabilised (for tests that check
    what the requests carried, not the numbers; not for runs whose requests a
    test checks one by one, like sequences, which a failed run may leave open)."""
    for _attempt in range(3):
        result = subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout
        )
        unstable = PERF_UNSTABLE in result.stdout + result.stderr
        if result.returncode == 0 or not (retry_unstable and unstable):
            break
    return result


# Differential tests: the real Triton, started the same way, when a command for it is
# given (e.g. TRITONX_REFERENCE_CMD=../shared/tools/triton_reference). Tests that
# compare behaviour take a server fixture parametrized over both.
REFERENCE_CMD_ENV = "TRITONX_REFERENCE_CMD"


def reference_command() -> list[str] | None:
    import shlex

    value = os.environ.get(REFERENCE_CMD_ENV, "").strip()
    return shlex.split(value) if value else None


# Marks a test (or, as ``pytestmark``, a module) that compares with the reference.
needs_reference = pytest.mark.skipif(
    reference_command() is None, reason=f"{REFERENCE_CMD_ENV} is not set"
)


# Ports picked here for a server to bind later come from below the system's
# ephemeral range: a port the system hands out for a bind to port 0 (a server's
# other endpoints, any client's socket) is never one of them, so none can be taken
# by such a bind before the server binds it (seen in CI: Vertex AI's AIP_HTTP_PORT,
# picked free, then handed by the system to the same server's gRPC endpoint).
_LOWEST_PICK = 20000


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _pick_range() -> tuple[int, int]:
    """This process' ports: below the ephemeral range and, under pytest-xdist, a
    slice of its own. A picked port is free only until its server binds it, and
    another worker could pick the same one in between (seen in CI: the reference's
    HTTP port bound first by another worker's gRPC server)."""
    high = _ephemeral_low()
    low = max(1024, min(_LOWEST_PICK, high - 1000))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if worker.startswith("gw") and worker[2:].isdigit() and count > 1:
        width = (high - low) // count
        low += int(worker[2:]) % count * width
        high = low + width
    return low, high


# Ports this process handed out lately: a port picked for one server (say a
# --sagemaker-port) is free again until that server binds it, so a pick for the
# next server could return it (seen in CI: the reference refused to start, its
# metrics and SageMaker ports equal).
_RECENT_PORTS: collections.deque[int] = collections.deque(maxlen=256)


def _bind_unused(sock: Any) -> int:
    """Binds ``sock`` to a free port of this process' range, not one handed out
    lately; returns it."""
    import random

    low, high = _pick_range()
    for _ in range(500):
        port = random.randrange(low, high)
        if port in _RECENT_PORTS:
            continue
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        _RECENT_PORTS.append(port)
        return port
    sock.bind(("127.0.0.1", 0))  # all taken: any free one
    return int(sock.getsockname()[1])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        return _bind_unused(sock)


# For tests that start a server themselves (e.g. one logging to a file, whose
# ports run_server cannot read from the console).
free_port = _free_port


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each stays bound until all are picked, so the
    system cannot hand the same one out twice (a server given two equal ports
    refuses to start)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        return [_bind_unused(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def skip_if_the_reference_aborted(server: RunningServer) -> None:
    """Triton 2.51's python backend sometimes aborts on this machine (its stub IPC
    throws boost::interprocess::lock_exception): a differential test has nothing
    to compare with then, so it skips rather than fails."""
    try:
        server.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return
    if "lock_exception" in server.log_text():
        import pytest

        pytest.skip(
            "the reference Triton aborted (boost::interprocess::lock_exception)"
        )


# Triton 2.51's python backend, on a loaded machine, now and then misses its own
# stub health check and fails the request it was running with this (the server
# logs nothing and carries on).
REFERENCE_STUB_UNHEALTHY = re.compile(r"Stub process '[^']*' is not healthy\.")


@contextmanager
def run_reference(
    repos: Sequence[Path | str],
    *args: str,
    timeout: float = 120.0,
    wait_ready: bool = True,
) -> Iterator[RunningServer]:
    """Run the reference Triton on free ports until the block exits; waits until it
    is ready (``wait_ready``), else only live (a model failed to load)."""
    import http.client
    import urllib.request

    cmd = reference_command()
    if cmd is None:
        raise RuntimeError(f"{REFERENCE_CMD_ENV} is not set")
    ports = dict(zip(("http", "grpc", "metrics"), free_ports(3), strict=True))
    full = [*cmd, *(f"--model-repository={repo}" for repo in repos)]
    full += [f"--{name}-port={port}" for name, port in ports.items()]
    if not any(a.startswith("--exit-timeout-secs") for a in args):
        full.append(REFERENCE_EXIT_TIMEOUT)
    full += list(args)
    process = subprocess.Popen(
        full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server = RunningServer(process, ports, reference=True)
    pump = threading.Thread(target=_pump, args=(server,), daemon=True)
    pump.start()
    try:
        deadline = time.monotonic() + timeout
        health = "ready" if wait_ready else "live"
        urls = [f"http://127.0.0.1:{ports['http']}/v2/health/{health}"]
        # Triton starts its metrics endpoint after the HTTP one: wait for it too.
        if "--allow-metrics=false" not in args:
            urls.append(f"http://127.0.0.1:{ports['metrics']}/metrics")
        while urls:
            if process.poll() is not None:
                raise RuntimeError(f"reference exited early:\n{server.log_text()}")
            try:
                with urllib.request.urlopen(urls[0], timeout=1) as response:
                    if response.status == 200:
                        urls.pop(0)
                        continue
            except (OSError, http.client.HTTPException):
                # (not HTTP: another server on the port; the reference then exits)
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"reference not ready:\n{server.log_text()}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        pump.join(timeout=5)


def run_http_only(
    repos: Sequence[Path | str] | Path | str, engine: str, *args: str
) -> AbstractContextManager[RunningServer]:
    """A server with only its HTTP endpoint, on ``engine`` ("python" or "native"):
    what the tests that run once per HTTP engine start."""
    return run_server(
        repos,
        f"--http-engine={engine}",
        "--allow-grpc=false",
        "--allow-metrics=false",
        *args,
    )


def run_either(
    kind: str, repo: Path | str | Sequence[Path | str], *args: str
) -> AbstractContextManager[RunningServer]:
    """tritonx (kind "tritonx") or the reference Triton (kind "reference"; the test
    skips when no reference command is given), on ``repo`` (or several
    repositories): the server of a differential test."""
    repos = [repo] if isinstance(repo, (str, Path)) else list(repo)
    if kind == "reference":
        if reference_command() is None:
            import pytest

            pytest.skip(f"{REFERENCE_CMD_ENV} is not set")
        return run_reference(repos, *args)
    return run_server(repos, *args)


@contextmanager
def ours_and_reference(
    repo: Path | str, *args: str
) -> Iterator[dict[str, RunningServer]]:
    """tritonx as "tritonx" and, when a reference command is given, the real Triton
    as "reference", both on ``repo``: the servers of a table of fixed
    differential cases."""
    with run_server(repo, *args) as ours:
        if reference_command() is None:
            yield {"tritonx": ours}
            return
        with run_reference([repo], *args) as theirs:
            yield {"tritonx": ours, "reference": theirs}


# Triton 2.51's threads write to one stderr without a lock, so a line can end
# without its newline and the next entry follow on the same line (seen in CI: an
# http_server.cc verbose line with a model.py line glued on).
_GLUED_ENTRY = re.compile(
    r"(?<=[^\n])(?=[IWEV]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] )"
)


def split_glued_entries(log: str) -> str:
    """A server log with every default-format entry on a line of its own. Not for
    logs whose messages may hold entry-like text (an injection test's)."""
    return _GLUED_ENTRY.sub("\n", log)


def differential(scenario: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """tritonx's observations (``scenario("tritonx")``), checked equal to the
    reference's when a reference command is given."""
    seen = scenario("tritonx")
    if reference_command() is not None:
        # (no assertion rewriting in this module: name what differs)
        reference = scenario("reference")
        differs = {
            key: (seen.get(key), reference.get(key))
            for key in seen.keys() | reference.keys()
            if seen.get(key) != reference.get(key)
        }
        assert not differs, f"(tritonx, reference) differ: {differs}"
    return seen


def pip_install_target(source: Path, work: Path) -> Path:
    """A package directory pip-installed into a private ``--target`` directory
    (``work``/site), built from a copy (setuptools writes build/ and *.egg-info
    next to its sources)."""
    import shutil

    target = work / "site"
    copy = work / "src" / source.name
    shutil.copytree(source, copy)
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--no-index", "--target", str(target),
            str(copy),
        ],
        check=True,
    )  # fmt: skip
    return target


# The servers a python-model differential runs on: tritonx with the models in its
# own process (the default), tritonx with them in stub processes, and Triton 2.51
# (whose python models always run in stubs).
PYTHON_MODEL_SERVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "in-process": ("tritonx", ()),
    "process": ("tritonx", ("--backend-config=python,execution-mode=process",)),
    "reference": ("reference", ()),
}


def run_python_model_server(
    name: str, repo: Path | str, *args: str
) -> AbstractContextManager[RunningServer]:
    """The server ``name`` of PYTHON_MODEL_SERVERS on ``repo`` (run_either: the
    test skips when it is the reference and none is given)."""
    kind, mode = PYTHON_MODEL_SERVERS[name]
    return run_either(kind, repo, *mode, *args)


def observe_both(
    repo: Path | str, observe: Callable[[RunningServer], Any]
) -> dict[str, Any]:
    """``observe`` of tritonx on ``repo`` and, when a reference command is given, of
    Triton 2.51 on it, by kind ("tritonx", "reference"): for differential tests that
    compare case by case (parametrized over a shared transcript)."""
    seen = {}
    with run_server(repo) as server:
        seen["tritonx"] = observe(server)
    if reference_command() is not None:
        with run_reference([repo]) as server:
            seen["reference"] = observe(server)
    return seen
