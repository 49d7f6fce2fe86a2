"""The repaired wheel (scripts/build-wheel.sh) in a fresh venv, as a user installs it.

Opt-in, because building the wheel takes minutes: TRITONX_TEST_WHEEL=1 builds it with
the script (reusing pyproject's build directory, so after `pip install .` nothing
recompiles); TRITONX_TEST_WHEEL=/path/to/tritonx-...whl tests a wheel built
before. .ci/run sets it. The wheel is installed with plain `pip install` into a new
venv, its extension must resolve every library outside glibc/libstdc++/libgcc from the
wheel's own tritonx.libs/ (no LD_LIBRARY_PATH, whatever -dev packages this machine
has), and the installed tritonx-server serves the example repository to tritonclient
over HTTP and gRPC.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import run_server

ROOT = Path(__file__).resolve().parents[2]
WHEEL_ENV = "TRITONX_TEST_WHEEL"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get(WHEEL_ENV),
        reason=f"builds the wheel (minutes): set {WHEEL_ENV}=1, or to a built wheel",
    ),
    pytest.mark.timeout(1800),
]

# What a manylinux wheel may take from the system: the glibc family, libstdc++ and
# libgcc, and zlib, which auditwheel's manylinux policies also count as present (CPython's
# own zlib module links it); ld.so and the vDSO are the loader itself.
SYSTEM_LIBS = {
    "libz.so.1",
    "linux-vdso.so.1",
    "ld-linux-x86-64.so.2",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libstdc++.so.6",
    "libgcc_s.so.1",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ[WHEEL_ENV]
    if given != "1":
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(ROOT / "scripts" / "build-wheel.sh"), str(out)], check=True)
    (built,) = out.glob("tritonx-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run(
        [str(path / "bin" / "pip"), "install", "-q", str(wheel)],
        check=True,
        env=_clean_env(),
    )
    return path


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONPATH", "LD_LIBRARY_PATH", "TRITONX_TEST_SOURCE_TREE"):
        env.pop(name, None)
    return env


def test_wheel_is_manylinux_and_vendors_grpc(wheel: Path) -> None:
    assert re.search(r"-manylinux_2_\d+_x86_64\.whl$", wheel.name), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    libs = [n for n in names if n.startswith("tritonx.libs/")]
    for wanted in ("libgrpc++", "libprotobuf", "libabsl_", "libevent_core", "libssl"):
        assert any(wanted in n for n in libs), f"{wanted} missing from tritonx.libs/"
    # Stripped: about 8.5 MB here; unstripped grpc/protobuf would be several times that.
    assert wheel.stat().st_size < 20 * 1024 * 1024
    # The tag is auditwheel's verdict (`auditwheel repair` names the most compatible
    # policy the symbols allow); the ldd test below checks the libraries themselves.


def test_extension_needs_only_glibc_libstdcxx_and_libgcc(venv: Path) -> None:
    located = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import tritonx._C as m; print(m.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=venv,
        env=_clean_env(),
    ).stdout.strip()
    extension = Path(located)
    assert venv in extension.parents, f"imported from outside the venv: {extension}"
    vendored = extension.parents[1] / "tritonx.libs"
    assert vendored.is_dir()
    ldd = subprocess.run(
        ["ldd", str(extension)],
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(),
    ).stdout
    outside = []
    for line in ldd.splitlines():
        parts = line.split()
        if not parts:
            continue
        name = parts[0]
        path = parts[2] if len(parts) > 2 and parts[1] == "=>" else parts[0]
        assert path != "not", f"unresolved: {line}"
        if Path(path).resolve().parent == vendored.resolve():
            continue
        if Path(name).name not in SYSTEM_LIBS:
            outside.append(line.strip())
    assert not outside, "libraries taken from the system:\n" + "\n".join(outside)


def test_installed_server_serves_the_example_repository(venv: Path) -> None:
    env = {"PYTHONPATH": "", "LD_LIBRARY_PATH": ""}
    launcher = [str(venv / "bin" / "tritonx-server")]
    with run_server(ROOT / "model_repository", env=env, launcher=launcher) as server:
        a = np.arange(4, dtype=np.float32)
        b = np.ones(4, dtype=np.float32)
        http = httpclient.InferenceServerClient(server.http_url)
        inputs = [
            httpclient.InferInput("INPUT0", [4], "FP32"),
            httpclient.InferInput("INPUT1", [4], "FP32"),
        ]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        result = http.infer("add_sub", inputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)

        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        ginputs = [
            grpcclient.InferInput("INPUT0", [1, 4], "FP32"),
            grpcclient.InferInput("INPUT1", [1, 4], "FP32"),
        ]
        ginputs[0].set_data_from_numpy(a.reshape(1, 4))
        ginputs[1].set_data_from_numpy(b.reshape(1, 4))
        result = grpc.infer("simple_onnx", ginputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), (a - b).reshape(1, 4))
        log = server.log_text()
    assert "Traceback" not in log
