"""Builds without the optional C++ servers.

A machine without grpc++ (or libevent) must stop at CMake's configure step with one
message naming the install script and the option that builds without that server. A
build without them serves what it has: no gRPC server means HTTP and metrics with a
warning in the log; no C++ HTTP server means --http-engine=auto serves HTTP from the
Python engine, and says so.

Configuring is cheap, so the missing libraries are simulated with CMake's and
pkg-config's own switches (CMAKE_DISABLE_FIND_PACKAGE_<name>, PKG_CONFIG_LIBDIR). A
whole second build is not: the servers run the installed extension with the
component's type removed from ``tritonx._C`` before anything imports it, which is what
such a build's module looks like (csrc/CMakeLists.txt leaves bind_grpc.cpp /
bind_http.cpp out of it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.http as httpclient
from serverutil import run_server
from testmodels import ECHO_MODEL

ROOT = Path(__file__).resolve().parents[2]

# Skips CUDA detection (check_language compiles a test program with nvcc).
_CHEAP = [
    "-DCMAKE_CUDA_COMPILER=",
    "-DTRITONX_ENABLE_CUDA=OFF",
    "-DTRITONX_BUILD_PYTHON=OFF",
    "-DBUILD_TESTING=OFF",
]


def _configure(
    tmp_path: Path, *defines: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    return subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(tmp_path / "build"), *_CHEAP, *defines],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=240,
    )


def test_configure_without_grpc_says_what_to_install(tmp_path: Path) -> None:
    result = _configure(tmp_path, "-DCMAKE_DISABLE_FIND_PACKAGE_gRPC=ON")
    assert result.returncode != 0
    text = " ".join(result.stderr.split())  # CMake wraps long messages
    assert "tritonx: grpc++ not found" in text
    assert "./scripts/install-system-deps.sh" in text
    assert "-C cmake.define.TRITONX_ENABLE_GRPC=OFF" in text
    assert "Could NOT find" not in text
    assert text.count("CMake Error") == 1


def test_configure_without_grpc_succeeds_with_grpc_off(tmp_path: Path) -> None:
    result = _configure(
        tmp_path,
        "-DCMAKE_DISABLE_FIND_PACKAGE_gRPC=ON",
        "-DCMAKE_DISABLE_FIND_PACKAGE_Protobuf=ON",
        "-DTRITONX_ENABLE_GRPC=OFF",
    )
    assert result.returncode == 0, result.stderr
    assert "tritonx: CUDA OFF, gRPC OFF" in result.stdout


def test_configure_without_libevent_says_what_to_install(tmp_path: Path) -> None:
    # An empty pkg-config search path: libevent's .pc files are not found.
    env = {"PKG_CONFIG_LIBDIR": str(tmp_path / "no-pkgconfig"), "PKG_CONFIG_PATH": ""}
    result = _configure(tmp_path, "-DTRITONX_ENABLE_GRPC=OFF", env=env)
    assert result.returncode != 0
    text = " ".join(result.stderr.split())
    assert "tritonx: libevent (looked up with pkg-config) not found" in text
    assert "./scripts/install-system-deps.sh" in text
    assert "-C cmake.define.TRITONX_ENABLE_HTTP=OFF" in text
    ok = _configure(
        tmp_path, "-DTRITONX_ENABLE_GRPC=OFF", "-DTRITONX_ENABLE_HTTP=OFF", env=env
    )
    assert ok.returncode == 0, ok.stderr


# --- servers of a build without a component -------------------------------------------

_HIDE = textwrap.dedent(
    """
    # Loaded at interpreter start (sitecustomize): removes what a build without the
    # component lacks from tritonx._C before tritonx imports it.
    import os

    import tritonx._C as _C

    for _name in os.environ["TRITONX_TEST_WITHOUT"].split(","):
        delattr(_C, _name)
    if not hasattr(_C, "GrpcServer"):
        _C.grpc_built = False
    """
)


def _without(tmp_path: Path, *names: str) -> dict[str, str]:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_HIDE)
    path = [str(shim)]
    if os.environ.get("TRITONX_TEST_SOURCE_TREE"):
        path.append(str(ROOT / "python"))
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return {
        "PYTHONPATH": os.pathsep.join(path),
        "TRITONX_TEST_WITHOUT": ",".join(names),
    }


@pytest.fixture
def echo_repo(write_model) -> Path:  # type: ignore[no-untyped-def]
    config = """
        name: "echo"
        backend: "python"
        max_batch_size: 0
        input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 2 ] }]
        output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 2 ] }]
    """
    return write_model("echo", config, ECHO_MODEL)


def _infer_echo(url: str) -> None:
    client = httpclient.InferenceServerClient(url)
    data = np.array([1.5, -2.0], dtype=np.float32)
    inp = httpclient.InferInput("INPUT0", [2], "FP32")
    inp.set_data_from_numpy(data)
    result = client.infer("echo", [inp])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_server_without_grpc_serves_http_and_metrics(
    tmp_path: Path, echo_repo: Path
) -> None:
    env = _without(tmp_path, "GrpcServer")
    with run_server(echo_repo, env=env, services=("http", "metrics")) as server:
        _infer_echo(server.http_url)
        with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
            metrics = response.read().decode()
        assert 'nv_inference_request_success{model="echo",version="1"} 1' in metrics
        log = server.log_text()
    assert "gRPC is not served: this build of tritonx has no C++ gRPC server" in log
    assert "TRITONX_ENABLE_GRPC=OFF" in log
    assert "Started GRPCInferenceService" not in log
    assert "Traceback" not in log
    assert server.process.returncode == 0


def test_http_auto_falls_back_to_python_engine_and_says_so(
    tmp_path: Path, echo_repo: Path
) -> None:
    # What bind_http.cpp adds to the module (the server and its JSON reader).
    env = _without(
        tmp_path,
        "HttpServer",
        "native_json_loads",
        "native_decode_generate",
        "native_parse_infer",
    )
    with run_server(echo_repo, env=env) as server:
        _infer_echo(server.http_url)
        # A body past http_offload.OFFLOAD_BYTES: json.loads holds the GIL, so a
        # helper process decodes it.
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "INPUT0",
                        "datatype": "FP32",
                        "shape": [2],
                        "data": [1.5, -2.0],
                    }
                ],
                "parameters": {"padding": "x" * 400_000},
            }
        ).encode()
        request = urllib.request.Request(
            f"http://{server.http_url}/v2/models/echo/infer",
            body,
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            outputs = json.loads(reply.read())["outputs"]
        assert outputs[0]["data"] == [1.5, -2.0]
        helpers = [
            child
            for child in psutil.Process(server.process.pid).children()
            if "spawn_main" in " ".join(child.cmdline())
        ]
        assert helpers
        # The generate extension too (its walk needs no RapidJSON).
        for route in ("generate", "generate_stream"):
            request = urllib.request.Request(
                f"http://{server.http_url}/v2/models/echo/{route}",
                b'{"INPUT0": [1.5, -2.0], "id": "g"}',
                {"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as reply:
                text = reply.read().decode()
            answer = '{"OUTPUT0":[1.5,-2.0],"id":"g","model_name":"echo","model_version":"1"}'
            assert text == (answer if route == "generate" else f"data: {answer}\n\n")
        log = server.log_text()
    assert (
        "HTTP is served by the Python engine: this build of tritonx has no C++ " in log
    )
    assert "Traceback" not in log
