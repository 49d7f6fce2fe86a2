"""Behaviours from Triton's QA directory L0_server_status, as differential tests:
each expectation is checked over HTTP and gRPC on tritonx and, when
TRITONX_REFERENCE_CMD is given, on Triton 2.51 serving the same repository.

Model metadata and statistics per version as versions are served, left out by
the version policy, deleted and added; readiness per version; the refusals for
an unknown model and an unknown version. L0_server_status changes the versions
in poll mode; here an explicit load picks the change up (Triton 2.51 does not
reliably notice a removed version directory in poll mode, see
tests/pollmode/test_poll_reference.py), the answers being those of the model
as served either way."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf.json_format import MessageToDict
from grpcutil import wait_until
from serverutil import RunningServer, run_either
from tritonclient.utils import InferenceServerException

# Every version answers OUTPUT0 = INPUT0 (the version is not what is checked).
MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
                    "OUTPUT0",
                    pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
                for r in requests]
"""


def _config(name: str, policy: str) -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 8
version_policy: {policy}
input [ {{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }} ]
instance_group [ {{ kind: KIND_CPU }} ]
"""


def _write(root: Path, name: str, versions: list[int], policy: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(_config(name, policy))
    for version in versions:
        (root / name / str(version)).mkdir()
        (root / name / str(version) / "model.py").write_text(MODEL)


# Every model loaded at start-up, and loads allowed to pick up changes.
EXPLICIT = ("--model-control-mode=explicit", "--load-model=*")


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp(f"qa_status_{request.param}") / "repo"
    _write(root, "latest3", [1, 2, 3], "{ latest: { num_versions: 3 } }")
    _write(root, "specific", [1, 2, 3], "{ specific: { versions: [ 1, 3 ] } }")
    _write(root, "shrinking", [1, 2, 3], "{ all: {} }")
    _write(root, "growing", [1], "{ latest: { num_versions: 1 } }")
    with run_either(request.param, root, *EXPLICIT) as running:
        running.repo = root  # type: ignore[attr-defined]
        yield running


Call = Callable[[Any], Any]


def _both(server: RunningServer, call: Call) -> dict[str, Any]:
    """``call``'s answer from an HTTP and from a gRPC client (protobuf answers as
    the JSON HTTP gives), or ("error", message)."""
    answers: dict[str, Any] = {}
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for kind, client in (("http", http), ("grpc", grpc)):
            try:
                answer = call(client)
            except InferenceServerException as error:
                answer = ("error", error.message())
            if hasattr(answer, "DESCRIPTOR"):
                answer = MessageToDict(answer, preserving_proto_field_name=True)
            if isinstance(answer, dict):  # gRPC's int64 dims come as strings
                for tensor in answer.get("inputs", []) + answer.get("outputs", []):
                    tensor["shape"] = [int(d) for d in tensor["shape"]]
            answers[kind] = answer
    finally:
        http.close()
        grpc.close()
    return answers


def _same(server: RunningServer, call: Call) -> Any:
    """The answer, checked to be the same over HTTP and gRPC."""
    answers = _both(server, call)
    assert answers["http"] == answers["grpc"]
    return answers["http"]


def _versions(server: RunningServer, model: str) -> list[str]:
    return list(_same(server, lambda c: c.get_model_metadata(model))["versions"])


def _successes(server: RunningServer, model: str, version: str = "") -> Any:
    """Per version listed: (version, successful inferences), or the error."""
    return _same(server, _success_call(model, version))


def _wait_counted(server: RunningServer, model: str, version: str, want: Any) -> None:
    """Wait until both protocols read ``want`` (Triton counts a request after it
    answered it, so one protocol may read the count before the other)."""
    call = _success_call(model, version)
    wait_until(
        lambda: all(seen == want for seen in _both(server, call).values()),
        f"{model} version {version} to count {want}",
    )


def _success_call(model: str, version: str) -> Call:
    def call(client: Any) -> Any:
        answer = client.get_inference_statistics(model, version)
        if not isinstance(answer, dict):
            answer = MessageToDict(answer, preserving_proto_field_name=True)
        return [
            (
                s["version"],
                int(s["inference_stats"].get("success", {}).get("count", 0)),
            )
            for s in answer["model_stats"]
        ]

    return call


def _ready(server: RunningServer, model: str, versions: list[str]) -> list[bool]:
    def ready(version: str) -> bool:
        return bool(_same(server, lambda c: c.is_model_ready(model, version)))

    return [ready(v) for v in versions]


def _infer(server: RunningServer, model: str, version: str = "") -> None:
    data = np.arange(16, dtype=np.int32).reshape(1, 16)
    with httpclient.InferenceServerClient(server.http_url) as client:
        tensor = httpclient.InferInput("INPUT0", [1, 16], "INT32")
        tensor.set_data_from_numpy(data)
        result = client.infer(model, [tensor], model_version=version)
    assert (result.as_numpy("OUTPUT0") == data).all()


def _reload(server: RunningServer, model: str) -> None:
    with httpclient.InferenceServerClient(server.http_url) as client:
        client.load_model(model)


def test_unknown_model_and_version(server: RunningServer) -> None:
    assert _same(server, lambda c: c.get_model_metadata("foo")) == (
        "error",
        "Request for unknown model: 'foo' is not found",
    )
    assert _same(server, lambda c: c.get_model_metadata("latest3", "99")) == (
        "error",
        "Request for unknown model: 'latest3' version 99 is not found",
    )
    assert _same(server, lambda c: c.get_inference_statistics("foo")) == (
        "error",
        "requested model 'foo' is not available",
    )
    assert _same(server, lambda c: c.is_server_ready())
    assert _same(server, lambda c: c.is_server_live())


def test_latest_versions_metadata_and_statistics(server: RunningServer) -> None:
    """An inference without a version goes to the latest one, whose statistics
    alone count it; the metadata lists every served version."""
    assert _versions(server, "latest3") == ["1", "2", "3"]
    metadata = _same(server, lambda c: c.get_model_metadata("latest3"))
    assert metadata["platform"] == "python"
    assert metadata["name"] == "latest3"
    assert metadata["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]}
    ]
    assert metadata["outputs"] == [
        {"name": "OUTPUT0", "datatype": "INT32", "shape": [-1, 16]}
    ]
    for _ in range(3):
        _infer(server, "latest3")
    # Triton counts a request after it has answered it.
    _wait_counted(server, "latest3", "3", [("3", 3)])
    assert _successes(server, "latest3", "1") == [("1", 0)]
    assert _successes(server, "latest3", "2") == [("2", 0)]
    assert sorted(_successes(server, "latest3")) == [("1", 0), ("2", 0), ("3", 3)]
    assert _ready(server, "latest3", ["1", "2", "3", "4"]) == [
        True,
        True,
        True,
        False,
    ]


def test_versions_left_out_by_a_specific_policy(server: RunningServer) -> None:
    assert _versions(server, "specific") == ["1", "3"]
    assert _ready(server, "specific", ["1", "2", "3"]) == [True, False, True]
    _infer(server, "specific", "1")
    _wait_counted(server, "specific", "1", [("1", 1)])
    assert _successes(server, "specific", "3") == [("3", 0)]
    assert _successes(server, "specific", "2") == (
        "error",
        "requested model version is not available for model 'specific'",
    )
    with pytest.raises(InferenceServerException) as caught:
        _infer(server, "specific", "2")
    assert caught.value.message() == (
        "Request for unknown model: 'specific' version 2 is not found"
    )


def test_deleted_versions(server: RunningServer) -> None:
    """Versions 2 and 3 removed from the repository: once loaded again only
    version 1 is served, with no inference counted."""
    repo: Path = server.repo  # type: ignore[attr-defined]
    _infer(server, "shrinking", "3")
    _wait_counted(server, "shrinking", "3", [("3", 1)])
    shutil.rmtree(repo / "shrinking" / "2")
    shutil.rmtree(repo / "shrinking" / "3")
    _reload(server, "shrinking")
    assert _versions(server, "shrinking") == ["1"]
    assert _ready(server, "shrinking", ["1", "2", "3"]) == [True, False, False]
    assert _successes(server, "shrinking", "1") == [("1", 0)]
    assert _successes(server, "shrinking") == [("1", 0)]
    assert _successes(server, "shrinking", "3") == (
        "error",
        "requested model version is not available for model 'shrinking'",
    )


def test_added_version(server: RunningServer) -> None:
    """Version 7 added under a latest-1 policy: once loaded again it alone is
    served, version 1 is not."""
    repo: Path = server.repo  # type: ignore[attr-defined]
    assert _versions(server, "growing") == ["1"]
    (repo / "growing" / "7").mkdir()
    (repo / "growing" / "7" / "model.py").write_text(MODEL)
    _reload(server, "growing")
    assert _versions(server, "growing") == ["7"]
    assert _ready(server, "growing", ["1", "7"]) == [False, True]
    assert _successes(server, "growing", "7") == [("7", 0)]
    assert _successes(server, "growing", "1") == (
        "error",
        "requested model version is not available for model 'growing'",
    )
