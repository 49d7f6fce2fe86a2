"""Host policies (``--host-policy=<name>,<setting>=<value>`` and ``instance_group {
host_policy: ... }``) through the wire, side by side with the real Triton 2.51 when
TRITONX_REFERENCE_CMD is set.

Each model answers with the CPU affinity of the thread that runs its ``execute``
and of the one that ran its ``initialize`` (``os.sched_getaffinity(0)``), so the
test sees where each instance runs: in process (tritonx's default) and in a stub
process (``EXECUTION_MODE`` "process"; Triton's python backend always uses stubs
and ignores the parameter).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import (
    free_ports,
    load_over_http,
    reference_command,
    run_either,
    server_env,
)
from tritonclient.utils import InferenceServerException

CORES = sorted(os.sched_getaffinity(0))
FIRST, LAST = CORES[0], CORES[-1]
pytestmark = pytest.mark.skipif(
    len(CORES) < 2, reason="binding is only visible with two usable cores"
)

AFFINITY_PY = """
import os
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_instance_name"]
        self.init_cpus = sorted(os.sched_getaffinity(0))

    def execute(self, requests):
        cpus = np.array(sorted(os.sched_getaffinity(0)), dtype=np.int32)
        init = np.array(self.init_cpus, dtype=np.int32)
        name = np.array([self.name.encode()], dtype=object)
        return [
            pb_utils.InferenceResponse([
                pb_utils.Tensor("NAME", name),
                pb_utils.Tensor("CPUS", cpus),
                pb_utils.Tensor("INIT_CPUS", init),
            ])
            for _ in requests
        ]
"""

CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [
  { name: "NAME" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "CPUS" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "INIT_CPUS" data_type: TYPE_INT32 dims: [ -1 ] }
]
instance_group [ %s ]
%s
"""
STUB = 'parameters { key: "EXECUTION_MODE" value: { string_value: "process" } }'

# The pinned group comes first: an instance created after it must not inherit its
# binding (nor may the stub zygote, started by the first stub's spawn).
MIXED = (
    '{ name: "pinned" count: 1 kind: KIND_CPU host_policy: "first_core" }, '
    '{ name: "plain" count: 1 kind: KIND_CPU }'
)
UNBOUND_AFTER_PINNED = (
    '{ name: "pinned" count: 1 kind: KIND_CPU host_policy: "first_core" }, '
    '{ name: "loose" count: 1 kind: KIND_CPU host_policy: "nowhere" }'
)
MODELS = {
    "default_named": ("{ count: 2 kind: KIND_CPU }", ""),
    "mixed": (MIXED, ""),
    "mixed_stub": (MIXED, STUB),
    "unbound_stub": (UNBOUND_AFTER_PINNED, STUB),
    "undefined_policy": ('{ count: 1 kind: KIND_CPU host_policy: "nowhere" }', ""),
}
POLICY_FLAGS = (
    f"--host-policy=cpu,cpu-cores={LAST}-{LAST}",
    f"--host-policy=first_core,cpu-cores={FIRST}-{FIRST}",
    # a setting given twice: the later one wins
    f"--host-policy=first_core,cpu-cores={FIRST}-{LAST}",
    f"--host-policy=first_core,cpu-cores={FIRST}-{FIRST}",
    "--host-policy=first_core,numa-node=0",
    # defined, never used: its bad value is never read
    "--host-policy=unused,cpu-cores=oops",
)


def write_model(repo: Path, name: str, groups: str, extra: str = "") -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(AFFINITY_PY)
    (repo / name / "config.pbtxt").write_text(CONFIG % (groups, extra))


def write_repo(repo: Path) -> None:
    for name, (groups, extra) in MODELS.items():
        write_model(repo, name, groups, extra)


def ask(client_module: Any, url: str, model: str) -> tuple[str, tuple, tuple]:
    client = client_module.InferenceServerClient(url)
    tensor = client_module.InferInput("IN", [1], "FP32")
    tensor.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    result = client.infer(model, [tensor])
    return (
        result.as_numpy("NAME")[0].decode(),
        tuple(result.as_numpy("CPUS").tolist()),
        tuple(result.as_numpy("INIT_CPUS").tolist()),
    )


def affinities(server: Any) -> dict[str, set[tuple[str, tuple, tuple]]]:
    """Per model, every (instance, execute cpus, initialize cpus) seen over both
    protocols, with requests in parallel so that every instance answers."""
    targets = [(httpclient, server.http_url), (grpcclient, server.grpc_url)]
    seen: dict[str, set[tuple[str, tuple, tuple]]] = {}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for model in MODELS:
            jobs = [
                pool.submit(ask, module, url, model)
                for module, url in targets
                for _ in range(6)
            ]
            seen[model] = {job.result() for job in jobs}
    return seen


def observe(kind: str, root: Path, *flags: str) -> dict[str, Any]:
    repo = root / "models"
    write_repo(repo)
    with run_either(kind, repo, "--disable-auto-complete-config", *flags) as server:
        return affinities(server)


ALL = tuple(CORES)


def test_without_host_policy_instances_use_every_core(tmp_path: Path) -> None:
    seen = observe("tritonx", tmp_path)
    assert seen == {
        "default_named": {
            ("default_named_0_0", ALL, ALL),
            ("default_named_0_1", ALL, ALL),
        },
        "mixed": {("pinned_0", ALL, ALL), ("plain_0", ALL, ALL)},
        "mixed_stub": {("pinned_0", ALL, ALL), ("plain_0", ALL, ALL)},
        "unbound_stub": {("pinned_0", ALL, ALL), ("loose_0", ALL, ALL)},
        "undefined_policy": {("undefined_policy_0_0", ALL, ALL)},
    }
    if reference_command() is not None:
        assert observe("reference", tmp_path / "reference") == seen


def test_policies_bind_their_instances_and_no_others(tmp_path: Path) -> None:
    """'cpu' binds the KIND_CPU instances whose group names no policy; a named
    policy binds its group only; a policy no flag defines binds nothing; stubs are
    bound as their instance is. The server's own threads keep every core."""
    first, last = (FIRST,), (LAST,)
    seen = observe("tritonx", tmp_path, *POLICY_FLAGS)
    assert seen == {
        "default_named": {
            ("default_named_0_0", last, last),
            ("default_named_0_1", last, last),
        },
        "mixed": {("pinned_0", first, first), ("plain_0", last, last)},
        "mixed_stub": {("pinned_0", first, first), ("plain_0", last, last)},
        "unbound_stub": {("pinned_0", first, first), ("loose_0", ALL, ALL)},
        "undefined_policy": {("undefined_policy_0_0", ALL, ALL)},
    }
    if reference_command() is not None:
        assert observe("reference", tmp_path / "reference", *POLICY_FLAGS) == seen


# -- values Triton refuses when an instance of the policy is created -----------------

BAD_VALUES = {
    # every cpu-cores item is a range: a lone core id is refused
    "lone_core": (
        f"cpu-cores={LAST}",
        "Invalid argument: host policy setting 'cpu-cores' format is "
        f"'<lower_cpu_core_id>-<upper_cpu_core_id>'. Got {LAST}",
    ),
    "not_a_number": (
        "cpu-cores=a-1",
        "Invalid argument: Parsing 'cpu-cores' value: Can't parse 'a' to integer",
    ),
    # an empty set: Triton prints strerror(errno) of a call that does not set it
    "empty_range": (
        "cpu-cores=1-0",
        "Internal: Unable to set NUMA thread affinity: Success",
    ),
    "bad_node": (
        "numa-node=x",
        "Invalid argument: Parsing 'numa-node' value: Can't parse 'x' to integer",
    ),
    "missing_node": (
        "numa-node=63",
        "Internal: Unable to set NUMA memory policy: Invalid argument",
    ),
}


def load_errors(kind: str, root: Path) -> dict[str, str | None]:
    repo = root / "models"
    for name in BAD_VALUES:
        write_model(repo, name, f'{{ count: 1 kind: KIND_CPU host_policy: "{name}" }}')
    write_model(repo, "fine", "{ count: 1 kind: KIND_CPU }")
    flags = [f"--host-policy={name},{value}" for name, (value, _) in BAD_VALUES.items()]
    with run_either(
        kind, repo, "--model-control-mode=explicit", "--load-model=fine", *flags
    ) as server:
        errors = {name: load_over_http(server, name)[1] for name in BAD_VALUES}
        # the loading threads are restored after each failure
        assert ask(httpclient, server.http_url, "fine")[1:] == (ALL, ALL)
        return errors


def test_bad_values_fail_the_load_with_tritons_message(tmp_path: Path) -> None:
    errors = load_errors("tritonx", tmp_path)
    for name, (_, message) in BAD_VALUES.items():
        assert errors[name] is not None and message in errors[name], name
    if reference_command() is not None:
        assert load_errors("reference", tmp_path / "reference") == errors


def run_to_exit(kind: str, repo: Path, *flags: str) -> tuple[int, str]:
    """Start a server that is expected to stop by itself: (exit code, output)."""
    ports = free_ports(3)
    args = [f"--model-repository={repo}", *flags]
    args += [
        f"--{name}-port={port}"
        for name, port in zip(("http", "grpc", "metrics"), ports, strict=True)
    ]
    if kind == "reference":
        cmd = reference_command()
        if cmd is None:
            pytest.skip("TRITONX_REFERENCE_CMD is not set")
    else:
        cmd = [sys.executable, "-m", "tritonx"]
    done = subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        env=server_env() if kind == "tritonx" else None,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


LOAD_FAILURE = re.compile(r"failed to load '(\w+)' version 1: ([^\"\n]*)")


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
def test_a_bad_value_stops_startup(tmp_path: Path, kind: str) -> None:
    repo = tmp_path / "models"
    write_model(repo, "m", "{ count: 1 kind: KIND_CPU }")
    code, output = run_to_exit(kind, repo, f"--host-policy=cpu,cpu-cores={LAST}")
    assert code != 0
    assert LOAD_FAILURE.findall(output) == [
        (
            "m",
            "Invalid argument: host policy setting 'cpu-cores' format is "
            f"'<lower_cpu_core_id>-<upper_cpu_core_id>'. Got {LAST}",
        )
    ]
    assert "failed to load all models" in output


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (
            "--host-policy=cpu",
            'Bad option: "--host-policy".\n--host-policy option format is '
            "'<policy name>,<setting>=<value>'. Got cpu\n",
        ),
        (
            "--host-policy=cpu,cpu-cores=",
            "--host-policy option format is '<policy name>,<setting>=<value>'. "
            "Got cpu,cpu-cores=\n",
        ),
        (
            "--host-policy=cpu,threads=2",
            "error: setting host policy: Unsupported - Unsupported host policy "
            "setting 'threads' is specified, supported settings are 'numa-node', "
            "'cpu-cores'\n",
        ),
    ],
)
def test_bad_flags_refuse_to_start(
    tmp_path: Path, kind: str, flag: str, message: str
) -> None:
    (tmp_path / "models").mkdir()
    code, output = run_to_exit(kind, tmp_path / "models", flag)
    assert code == 1
    assert message in output


CRASHY_PY = AFFINITY_PY.replace(
    "    def execute(self, requests):\n",
    "    def execute(self, requests):\n"
    "        if pb_utils.get_input_tensor_by_name(requests[0], 'IN').as_numpy()[0] < 0:\n"
    "            os._exit(3)\n",
)


def test_a_restarted_stub_is_bound_again(tmp_path: Path) -> None:
    """tritonx restarts a dead stub from a thread of its own: the new process gets
    the instance's binding all the same."""
    repo = tmp_path / "models"
    write_model(repo, "crashy", '{ count: 1 kind: KIND_CPU host_policy: "one" }', STUB)
    (repo / "crashy" / "1" / "model.py").write_text(CRASHY_PY)
    flag = f"--host-policy=one,cpu-cores={LAST}-{LAST}"
    with run_either("tritonx", repo, flag) as server:
        assert ask(httpclient, server.http_url, "crashy")[1:] == ((LAST,), (LAST,))
        client = httpclient.InferenceServerClient(server.http_url)
        tensor = httpclient.InferInput("IN", [1], "FP32")
        tensor.set_data_from_numpy(np.array([-1.0], dtype=np.float32))
        with pytest.raises(InferenceServerException, match="is not healthy"):
            client.infer("crashy", [tensor])
        assert server.wait_for_log("restart 1")
        for _ in range(200):  # back within the first backoff (50 ms) plus start-up
            try:
                answer = ask(httpclient, server.http_url, "crashy")
                break
            except InferenceServerException:
                time.sleep(0.05)
        else:
            pytest.fail("the stub did not come back")
        assert answer[1:] == ((LAST,), (LAST,))
