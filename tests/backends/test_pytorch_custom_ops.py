"""TorchScript models calling custom operators: the config's
``model_operations { op_library_filename: ... }`` loads the operator library into
the server before the model file, through a real server and tritonclient.

The library is compiled here (once per module) from a few lines of C++ registering
``tritonx_test::affine`` with ``TORCH_LIBRARY``; nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torchmodels as tm  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from serverutil import client_inputs, load_over_http, run_server  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402

# Only the operator registration headers, not torch/extension.h: the build takes
# seconds instead of most of a minute.
OP_SOURCE = """
#include <ATen/core/Tensor.h>
#include <torch/library.h>

static at::Tensor affine(const at::Tensor& x, double scale, double shift) {
  return x.mul(scale).add(shift);
}

TORCH_LIBRARY(tritonx_test, m) {
  m.def("affine(Tensor x, float scale, float shift) -> Tensor", &affine);
}
"""

LIBRARY_NAME = "tritonx_test_ops"

CONFIG = """
name: "%s"
backend: "pytorch"
max_batch_size: 0
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]
%s
"""


class Affine(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.tritonx_test.affine(x, 3.0, 0.5)


@pytest.fixture(scope="module")
def op_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled library, also loaded into this process: scripting a module
    resolves ``torch.ops.tritonx_test.affine`` against the registered schema."""
    if shutil.which("c++") is None or not cpp_extension.is_ninja_available():
        pytest.skip("building the operator library needs a C++ compiler and ninja")
    build = tmp_path_factory.mktemp("op_library")
    source = build / "tritonx_test_ops.cpp"
    source.write_text(OP_SOURCE)
    started = time.monotonic()
    # cpp_extension picks the C++ standard and ABI flags of the installed torch;
    # is_python_module=False builds a plain library and torch.ops.load_library's it.
    cpp_extension.load(
        name=LIBRARY_NAME,
        sources=[str(source)],
        build_directory=str(build),
        is_python_module=False,
    )
    print(f"operator library built in {time.monotonic() - started:.1f} s")
    library = build / f"{LIBRARY_NAME}.so"
    assert library.is_file()
    return library


def affine_model(repo: Path, name: str, libraries: list[str]) -> None:
    operations = "".join(f'op_library_filename: "{lib}" ' for lib in libraries)
    block = f"model_operations {{ {operations}}}" if libraries else ""
    tm.script(repo, name, Affine(), CONFIG % (name, block))


def test_op_library_from_the_config(op_library: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    # The server runs in this process's working directory: a relative path there
    # is one dlopen resolves (as Triton's backends hand the path over).
    relative = os.path.relpath(op_library)
    affine_model(repo, "unregistered", [])
    affine_model(repo, "missing_library", ["/nonexistent/libtritonx_ops.so"])
    affine_model(repo, "relative", [relative])
    affine_model(repo, "by_name", [op_library.name])
    affine_model(repo, "affine", [str(op_library)])
    # A bare file name is looked up on the library search path, as by dlopen.
    search_path = os.pathsep.join(
        p for p in (str(op_library.parent), os.environ.get("LD_LIBRARY_PATH")) if p
    )
    x = np.array([0.0, 1.0, -2.0], dtype=np.float32)
    expected = x * 3.0 + 0.5
    with run_server(
        repo, "--model-control-mode=explicit", env={"LD_LIBRARY_PATH": search_path}
    ) as server:
        # Before any library is loaded torch does not know the op: its message,
        # wrapped as the pytorch backend wraps a failed torch.jit.load.
        code, error = load_over_http(server, "unregistered")
        assert code == 400
        assert error is not None and error.startswith(
            "load failed for model 'unregistered': version 1 is at UNAVAILABLE "
            "state: Internal: failed to load model 'unregistered': "
        ), error
        assert "Unknown builtin op: tritonx_test::affine" in error, error
        # A library that cannot be loaded: INTERNAL with the loader's message
        # (Triton's tensorflow backend, the one that loads libraries this way).
        code, error = load_over_http(server, "missing_library")
        assert code == 400
        assert error == (
            "load failed for model 'missing_library': version 1 is at UNAVAILABLE "
            "state: Internal: /nonexistent/libtritonx_ops.so: cannot open shared "
            "object file: No such file or directory;\n"
        ), error
        # The first library load of the process, by a path relative to the
        # working directory; then by bare name; then by absolute path.
        for name in ("relative", "by_name", "affine"):
            assert load_over_http(server, name) == (200, None), name
        for module, url in (
            (httpclient, server.http_url),
            (grpcclient, server.grpc_url),
        ):
            client = module.InferenceServerClient(url)
            for name in ("relative", "by_name", "affine"):
                result = client.infer(name, client_inputs(module, {"INPUT__0": x}))
                np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"), expected)
            client.close()
        # Operators stay registered for the life of the process, for every model
        # (as Triton documents for its tensorflow backend's op libraries).
        assert load_over_http(server, "unregistered") == (200, None)
