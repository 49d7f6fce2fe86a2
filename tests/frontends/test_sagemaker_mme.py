"""SageMaker's multi-model endpoint (``/models``: load, list, describe, invoke and
unload models from archives under /opt/ml/models) through the wire, against
tritonx and, when $TRITONX_REFERENCE_CMD names it, the real Triton 2.51; and the
URL helpers behind it. The single-model endpoint is in test_sagemaker.py."""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tritonx._native", reason="core not built")

from cloudutil import (
    BINARY_ANSWER,
    BINARY_ANSWER_HEADER,
    BINARY_HEADER,
    BINARY_REQUEST,
    JSON,
    JSON_ANSWER,
    JSON_REQUEST,
    PARSE_ERROR,
    TEXT,
    Reply,
    call,
    sagemaker,
)
from cloudutil import SAGEMAKER_MIME as MIME
from cloudutil import check_reply as _check
from cloudutil import compact_json as _dumps
from cloudutil import error_json as _error
from cloudutil import write_model as _write
from testmodels import ADD_SUB, ADD_SUB_PY

from tritonx.errors import InvalidArgumentError
from tritonx.frontends.sagemaker import (
    archive_layout,
    is_out_of_memory,
    lexically_absolute,
)

KINDS = ["tritonx", "reference"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sagemaker_mme_repo")
    _write(root, "add_sub", ADD_SUB, ADD_SUB_PY)
    return root


MME_ROOT = Path("/opt/ml/models")
TARGET = "X-Amzn-SageMaker-Target-Model"
MME_MODEL_PY = """
import os
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        if os.path.exists(os.path.join(args["model_repository"], "OOM")):
            raise MemoryError("no room")
        if os.path.exists(os.path.join(args["model_repository"], "FAIL")):
            raise RuntimeError("never loads")

    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            if a[0] < 0:
                error = pb_utils.TritonError("CUDA out of memory, on purpose")
                out.append(pb_utils.InferenceResponse(error=error))
                continue
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]))
        return out
"""
MME_ENSEMBLE = """
name: "ens"
platform: "ensemble"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
        { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [ { model_name: "add_sub" model_version: -1
  input_map { key: "INPUT0" value: "INPUT0" }
  input_map { key: "INPUT1" value: "INPUT1" }
  output_map { key: "OUTPUT0" value: "OUTPUT0" } } ] }
"""


def _mme_model(model_dir: Path, config_name: str, marker: str = "") -> None:
    (model_dir / "1").mkdir(parents=True)
    config = ADD_SUB.replace('name: "add_sub"', f'name: "{config_name}"')
    (model_dir / "config.pbtxt").write_text(config)
    (model_dir / "1" / "model.py").write_text(MME_MODEL_PY)
    if marker:
        (model_dir / marker).write_text("")


@pytest.fixture
def archives() -> Iterator[dict[str, Path]]:
    """Model archives as SageMaker unpacks them, /opt/ml/models/<hash>/model, under
    hashes of this test's own; removed afterwards with whatever this created."""
    created = [p for p in (MME_ROOT.parent, MME_ROOT) if not p.exists()]
    try:
        MME_ROOT.mkdir(parents=True, exist_ok=True)
        probe = MME_ROOT / f"tritonx-probe-{uuid.uuid4().hex}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()
        pytest.skip(f"{MME_ROOT} is not writable here ({exc}); Triton requires it")
    tag = uuid.uuid4().hex[:12]
    found = {
        key: MME_ROOT / f"tritonx{tag}{key}" / "model"
        for key in ("plain", "ensemble", "oom", "fail", "other", "header", "sub")
    }
    try:
        # A config at the top: the archive directory is the model.
        _mme_model(found["plain"], "written_name")
        _mme_model(found["oom"], "oom", "OOM")
        _mme_model(found["fail"], "fail", "FAIL")
        _mme_model(found["header"], "header")
        _mme_model(found["other"], "other")
        # Models in sub-directories: the ensemble's is the one loaded.
        _mme_model(found["ensemble"] / "add_sub", "add_sub")
        (found["ensemble"] / "ens" / "1").mkdir(parents=True)
        (found["ensemble"] / "ens" / "config.pbtxt").write_text(MME_ENSEMBLE)
        _mme_model(found["sub"] / "only", "only")
        yield found
    finally:
        for path in found.values():
            shutil.rmtree(path.parent, ignore_errors=True)
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()


def _load(port: int, name: str, url: Path | str, target: str = "") -> Reply:
    body = json.dumps({"model_name": name, "url": str(url)}).encode()
    return call(port, "POST", "/models", body, {TARGET: target} if target else {})


def _outputs(reply: Reply) -> dict[str, list[float]]:
    assert reply.status == 200, reply
    return {out["name"]: out["data"] for out in json.loads(reply.body)["outputs"]}


def _models(reply: Reply) -> list[str]:
    # Triton lists its table in hash-map order: compared without order.
    assert (reply.status, reply.content_type) == (200, TEXT), reply
    return sorted(json.dumps(row) for row in json.loads(reply.body)["models"])


ADDED = {"OUTPUT0": [1.0, 2.0, 3.0, 4.0], "OUTPUT1": [-1.0, 0.0, 1.0, 2.0]}


@pytest.mark.parametrize("kind", KINDS)
def test_multi_model_endpoint(
    kind: str, tmp_path: Path, archives: dict[str, Path]
) -> None:
    """Triton's L0_sagemaker multi-model flow and its error answers, step by step:
    load (409 for a registered archive or a taken name), list, get, invoke (400,
    507 for out-of-memory messages), ensembles, the target-model header, load
    failures (507 / 400, the archive unregistered again) and unload."""
    plain = archives["plain"]
    root = str(plain.parent)
    # As in SageMaker: nothing but the archives (a model "add_sub" next to the
    # ensemble's would make its step ambiguous).
    with sagemaker(kind, tmp_path, {}, "--model-control-mode=explicit") as port:
        _check(_load(port, "m1", plain), 200, TEXT, b"")
        registered = _error(f"model repository '{root}' has already been registered")
        _check(_load(port, "m1", plain), 409, TEXT, registered)
        taken = _error(
            "failed to register 'm1', there is a conflicting mapping for 'm1'"
        )
        _check(_load(port, "m1", archives["other"]), 409, TEXT, taken)
        entry = {"modelName": "m1", "modelUrl": root}
        assert _models(call(port, "GET", "/models")) == [json.dumps(entry)]
        _check(call(port, "GET", "/models/m1"), 200, TEXT, _dumps(entry))

        invoke = "/models/m1/invoke"
        answer = JSON_ANSWER.replace(b'"add_sub"', b'"m1"')
        _check(call(port, "POST", invoke, JSON_REQUEST), 200, JSON, answer)
        binary_type = {"Content-Type": f"{MIME}{len(BINARY_HEADER)}"}
        reply = call(port, "POST", invoke, BINARY_REQUEST, binary_type)
        binary_header = BINARY_ANSWER_HEADER.replace(b'"add_sub"', b'"m1"')
        binary = BINARY_ANSWER.replace(b'"add_sub"', b'"m1"')
        _check(reply, 200, f"{MIME}{len(binary_header)}", binary)
        negative = JSON_REQUEST.replace(b"[0.0, 1.0", b"[-1.0, 1.0")
        oom = _error("CUDA out of memory, on purpose")
        _check(call(port, "POST", invoke, negative), 507, TEXT, oom)
        missing = _error(
            "[request id: <id_unknown>] expected 2 inputs but got 0 inputs for model "
            "'m1'. Got input(s) [], but missing required input(s) "
            "['INPUT0','INPUT1']. Please provide all required input(s)."
        )
        _check(call(port, "POST", invoke, b'{"inputs":[]}'), 400, JSON, missing)
        unknown = _error("Request for unknown model: 'nope' is not found")
        reply = call(port, "POST", invoke, JSON_REQUEST, {TARGET: "nope"})
        _check(reply, 400, JSON, unknown)
        _check(call(port, "POST", "/models/m2/invoke", JSON_REQUEST), 404, TEXT, b"")

        # An archive of several models loads its ensemble, under the archive's name;
        # the composing model is found by its directory name.
        _check(_load(port, "e1", archives["ensemble"], "e1"), 200, TEXT, b"")
        reply = call(port, "POST", "/models/e1/invoke", JSON_REQUEST)
        assert _outputs(reply) == {"OUTPUT0": ADDED["OUTPUT0"]}
        assert json.loads(reply.body)["model_name"] == "e1"
        _check(call(port, "DELETE", "/models/e1"), 200, TEXT, b"")
        _check(call(port, "GET", "/models/e1"), 404, TEXT, b"")
        _check(_load(port, "e1", archives["ensemble"], "e1"), 200, TEXT, b"")
        _check(call(port, "DELETE", "/models/e1"), 200, TEXT, b"")

        # Loads that fail: out of memory is 507; the archive is unregistered again,
        # so the same request fails the same way.
        def load_failure(name: str, cause: str, archive: Path, line: int) -> bytes:
            """Triton's body for a model.py whose initialize raised `cause`."""
            at = f"\\n\\nAt:\\n  {archive}/1/model.py({line}): initialize\\n;\\n"
            message = (
                f"load failed for model '{name}': version 1 is at UNAVAILABLE state: "
                f"Internal: {cause}"
            )
            return _error(message)[:-2] + at.encode() + b'"}'

        oom_load = load_failure("c1", "MemoryError: no room", archives["oom"], 8)
        _check(_load(port, "c1", archives["oom"]), 507, TEXT, oom_load)
        failed = load_failure("d1", "RuntimeError: never loads", archives["fail"], 10)
        _check(_load(port, "d1", archives["fail"]), 400, TEXT, failed)
        _check(_load(port, "d1", archives["fail"]), 400, TEXT, failed)
        gone = MME_ROOT / f"{plain.parent.name}missing" / "model"
        not_found = _error(f"failed to register '{gone}', repository not found")
        _check(_load(port, "z1", gone), 400, TEXT, not_found)
        # A url naming the model directory inside the archive: Triton registers
        # /opt/ml/models/<hash> and maps "model", which holds no model.
        poll = _error("failed to load 's2', failed to poll from model repository")
        _check(_load(port, "s2", archives["sub"] / "only"), 400, TEXT, poll)
        _check(_load(port, "s1", archives["sub"]), 200, TEXT, b"")
        sub_entry = {"modelName": "s1", "modelUrl": str(archives["sub"])}
        _check(call(port, "GET", "/models/s1"), 200, TEXT, _dumps(sub_entry))
        _check(call(port, "DELETE", "/models/s1"), 200, TEXT, b"")

        # The target-model header names the model; the table keeps model_name.
        header = archives["header"]
        _check(_load(port, "h1", header, "T1"), 200, TEXT, b"")
        h_entry = {"modelName": "h1", "modelUrl": str(header.parent)}
        _check(call(port, "GET", "/models/h1"), 200, TEXT, _dumps(h_entry))
        # Listed only when a model of the table's name is ready: "h1" is not.
        assert _models(call(port, "GET", "/models")) == sorted(
            [json.dumps(entry), "{}"]
        )
        unknown_h1 = _error("Request for unknown model: 'h1' is not found")
        reply = call(port, "POST", "/models/h1/invoke", JSON_REQUEST)
        _check(reply, 400, JSON, unknown_h1)
        reply = call(port, "POST", "/models/h1/invoke", JSON_REQUEST, {TARGET: "T1"})
        assert _outputs(reply) == ADDED
        assert json.loads(reply.body)["model_name"] == "T1"
        _check(call(port, "DELETE", "/models/h1", b"", {TARGET: "T1"}), 200, TEXT, b"")

        _check(call(port, "DELETE", "/models/m1"), 200, TEXT, b"")
        _check(call(port, "DELETE", "/models/m1"), 404, TEXT, b"")
        _check(call(port, "GET", "/models"), 200, TEXT, b'{"models":[]}')
        # Unloaded and unregistered: the archive loads again.
        _check(_load(port, "m1", plain), 200, TEXT, b"")
        _check(call(port, "POST", invoke, JSON_REQUEST), 200, JSON, answer)
        _check(call(port, "DELETE", "/models/m1"), 200, TEXT, b"")


def test_multi_model_load_checks(repo: Path, archives: dict[str, Path]) -> None:
    """tritonx's answers where tritonserver 2.51 has none to compare with: urls are
    checked as later Triton releases check them (2.51 registers any directory), and
    a body that is no JSON object of strings is refused (2.51 crashes on it)."""
    with sagemaker("tritonx", repo, {}, "--model-control-mode=explicit") as port:
        for url in ("/tmp/models/abc/model", "/opt/ml/models/abc/other", ""):
            expected = _error(
                f"Invalid \"url\" '{url}': expected a path of the form "
                "/opt/ml/models/<hash>/model[/<subdir>]"
            )
            _check(_load(port, "x", url), 400, TEXT, expected)
        _check(_load(port, "x", "/opt/ml/models/../../../proc/self"), 400, TEXT, b"")
        _check(call(port, "POST", "/models", b"{bad"), 400, TEXT, PARSE_ERROR + b"...")
        non_string = _error("attempt to access JSON non-string as string")
        _check(
            call(port, "POST", "/models", b'{"model_name": 5}'), 400, TEXT, non_string
        )
        _check(call(port, "POST", "/models", b'{"url": []}'), 400, TEXT, non_string)
        # A path with "..": normalized before it is checked and registered.
        plain = archives["plain"]
        dotted = f"{plain.parent}/../{plain.parent.name}/model/"
        _check(_load(port, "m1", dotted), 200, TEXT, b"")
        entry = {"modelName": "m1", "modelUrl": str(plain.parent)}
        _check(call(port, "GET", "/models/m1"), 200, TEXT, _dumps(entry))
        _check(call(port, "DELETE", "/models/m1"), 200, TEXT, b"")


def test_url_helpers() -> None:
    assert lexically_absolute("/opt/ml/models/a/./model") == "/opt/ml/models/a/model"
    assert lexically_absolute("/opt/ml/models/a/model/") == "/opt/ml/models/a/model/"
    assert lexically_absolute("/opt/ml/models/a/b/..") == "/opt/ml/models/a/"
    assert is_out_of_memory("load failed: CUDA_OUT_OF_MEMORY at init")
    assert is_out_of_memory("No space left on device")
    assert not is_out_of_memory("out of range")
    with pytest.raises(InvalidArgumentError, match="expected a path of the form"):
        archive_layout("/x/model", "/x/model")
