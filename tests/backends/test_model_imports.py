"""What a model.py can import, and when (backends/_pymodule.py), in both
execution modes.

Triton's stub puts the version directory and the model directory on sys.path for
good and imports the file as "<version>.model": a sibling module imported lazily
(inside initialize or execute), a module beside the version directories, and
``import model`` (a second copy of the file, which Triton's own test models run
``unittest.main("model")`` on) all resolve, and the command line is [""]. Two
models in one process each get their own sibling of a shared name, also while one
of them is still running its file's top level, and a sibling imported at load is
the module later imports get. Checked against Triton 2.51 when
TRITONX_REFERENCE_CMD is set.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from serverutil import needs_reference, run_either, run_server

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_STRING dims: [ 1 ] }} ]
"""

# Imports after load only (but `state`): at load time the file's directory is on
# sys.path anyway.
MODEL = """
import json
import sys
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

import state as state_at_load


def outcome(fn):
    try:
        return fn()
    except Exception as error:
        return type(error).__name__ + ": " + str(error)


class TritonPythonModel:
    def initialize(self, args):
        self.at_init = outcome(lambda: __import__("helper").VALUE)

    def execute(self, requests):
        import unittest

        second = outcome(lambda: __import__("model"))
        tests = outcome(
            lambda: unittest.main("model", exit=False).result.wasSuccessful())
        # BLS from a thread running the second copy's code.
        box = []
        thread = threading.Thread(target=lambda: box.append(second.call_add_sub()))
        thread.start()
        thread.join()
        # Imports in a thread the model started: no request context there.
        in_thread = []

        def import_in_thread():
            import helper

            in_thread.append(helper.VALUE)

        thread = threading.Thread(target=import_in_thread)
        thread.start()
        thread.join()
        seen = {
            "helper in initialize": self.at_init,
            "helper in execute": outcome(lambda: __import__("helper").VALUE),
            "beside the versions": outcome(lambda: __import__("outer").VALUE),
            "import model is a second copy": outcome(
                lambda: second.TritonPythonModel is not TritonPythonModel),
            "unittest.main('model')": tests,
            "BLS from the second copy's thread": box[0],
            "argv": sys.argv,
            "helper in own thread": in_thread[0],
            "import pkg.sub": outcome(dotted_import),
            "from pkg.sub import": outcome(dotted_from_import),
            "state is the load's": outcome(
                lambda: __import__("state") is state_at_load),
        }
        text = np.array([json.dumps(seen)], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", text)])
                for _ in requests]


def dotted_import():
    import pkg.sub

    return pkg.sub.VALUE


def dotted_from_import():
    from pkg.sub import VALUE

    return VALUE


def call_add_sub():
    x = pb_utils.Tensor("INPUT0", np.ones(4, np.float32))
    y = pb_utils.Tensor("INPUT1", np.ones(4, np.float32))
    response = pb_utils.InferenceRequest(
        model_name="add_sub", inputs=[x, y], requested_output_names=["OUTPUT0"]
    ).exec()
    if response.has_error():
        return response.error().message()
    return pb_utils.get_output_tensor_by_name(response, "OUTPUT0").as_numpy().tolist()


class ItRuns(__import__("unittest").TestCase):
    def test_a_helper_in_the_test_module(self):
        self.assertTrue(__import__("helper").VALUE.startswith("helper of"))
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from testmodels import ADD_SUB, ADD_SUB_PY

    root = tmp_path_factory.mktemp("imports")
    for name in ("first", "second"):
        version = root / name / "1"
        version.mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(CONFIG.format(name=name))
        (version / "model.py").write_text(MODEL)
        (version / "helper.py").write_text(f"VALUE = 'helper of {name}'\n")
        (root / name / "outer.py").write_text(f"VALUE = 'outer of {name}'\n")
        (version / "state.py").write_text("")
        (version / "pkg").mkdir()
        (version / "pkg" / "__init__.py").write_text("")
        (version / "pkg" / "sub.py").write_text(f"VALUE = 'sub of {name}'\n")
    (root / "add_sub" / "1").mkdir(parents=True)
    (root / "add_sub" / "config.pbtxt").write_text(ADD_SUB)
    (root / "add_sub" / "1" / "model.py").write_text(ADD_SUB_PY)
    return root


def _seen(kind: str, repo: Path, *args: str) -> dict[str, dict[str, object]]:
    with run_either(kind, repo, *args) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        x = httpclient.InferInput("IN", [1], "FP32")
        x.set_data_from_numpy(np.ones(1, np.float32))
        seen = {}
        for name in ("first", "second"):
            out = client.infer(name, [x]).as_numpy("OUT")
            assert out is not None
            seen[name] = json.loads(out[0])
        return seen


def _expected(name: str) -> dict[str, object]:
    return {
        "helper in initialize": f"helper of {name}",
        "helper in execute": f"helper of {name}",
        "beside the versions": f"outer of {name}",
        "import model is a second copy": True,
        "unittest.main('model')": True,
        "BLS from the second copy's thread": [2.0, 2.0, 2.0, 2.0],
        "argv": [""],
        "helper in own thread": f"helper of {name}",
        "import pkg.sub": f"sub of {name}",
        "from pkg.sub import": f"sub of {name}",
        "state is the load's": True,
    }


@pytest.mark.parametrize("mode", ["in-process", "process"])
def test_lazy_imports_resolve_as_in_triton(repo: Path, mode: str) -> None:
    seen = _seen("tritonx", repo, f"--backend-config=python,execution-mode={mode}")
    for name in ("first", "second"):
        assert seen[name] == _expected(name), name


@needs_reference
def test_reference_resolves_the_same(repo: Path) -> None:
    seen = _seen("reference", repo)
    for name in ("first", "second"):
        assert seen[name] == _expected(name), name


# Holds its load in the file's top level (after importing its own siblings) until
# the test lets it go.
HELD_AT_LOAD = """
import os
import time

import helper
import pkg.sub
import triton_python_backend_utils as pb_utils

open({marker!r}, "w").close()
deadline = time.monotonic() + 60
while not os.path.exists({release!r}) and time.monotonic() < deadline:
    time.sleep(0.05)


class TritonPythonModel:
    def execute(self, requests):
        import numpy as np

        text = np.array([helper.VALUE + "/" + pkg.sub.VALUE], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", text)])
                for _ in requests]
"""

LAZY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        import helper
        import pkg.sub

        text = np.array([helper.VALUE + "/" + pkg.sub.VALUE], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", text)])
                for _ in requests]
"""


def test_a_loading_model_lends_nothing_to_a_running_one(tmp_path: Path) -> None:
    """In process, "running" imports its siblings for the first time while "held"
    has imported its own same-named ones and still runs its file's top level."""
    marker, release = tmp_path / "loading", tmp_path / "release"
    repo = tmp_path / "repo"
    sources = {
        "running": LAZY,
        "held": HELD_AT_LOAD.format(marker=str(marker), release=str(release)),
    }
    for name, source in sources.items():
        version = repo / name / "1"
        (version / "pkg").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name))
        (version / "model.py").write_text(source)
        (version / "helper.py").write_text(f"VALUE = 'helper of {name}'\n")
        (version / "pkg" / "__init__.py").write_text("")
        (version / "pkg" / "sub.py").write_text(f"VALUE = 'sub of {name}'\n")
    with run_server(
        repo, "--model-control-mode=explicit", "--load-model=running"
    ) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        x = httpclient.InferInput("IN", [1], "FP32")
        x.set_data_from_numpy(np.ones(1, np.float32))
        # tritonclient.http's connections are gevent's: one client per thread.
        loading = threading.Thread(
            target=lambda: httpclient.InferenceServerClient(server.http_url).load_model(
                "held"
            )
        )
        loading.start()
        try:
            deadline = time.monotonic() + 60
            while not marker.exists():
                assert time.monotonic() < deadline, "held never started loading"
                time.sleep(0.05)
            out = client.infer("running", [x]).as_numpy("OUT")
        finally:
            release.touch()
            loading.join()
        assert out is not None and out[0] == b"helper of running/sub of running"
        out = client.infer("held", [x]).as_numpy("OUT")
        assert out is not None and out[0] == b"helper of held/sub of held"
