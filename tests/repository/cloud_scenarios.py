"""What the cloud-repository tests (test_cloud_s3.py, test_cloud_gcs.py) share:
the models they put in a bucket, how they look at a server (index, config,
inference over HTTP and gRPC, start-up errors), and the scenarios that read the
same on every storage service: explicit loads and poll mode following what
changes in the bucket. Each scenario runs on tritonx and, when
TRITONX_REFERENCE_CMD is set, on the real Triton, and checks both saw the same.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cloudutil import launch_command
from serverutil import (
    RunningServer,
    differential,
    free_ports,
    run_either,
)
from testmodels import ADD_SUB, ADD_SUB_PY
from tritonclient.utils import InferenceServerException

A = np.arange(4, dtype=np.float32)
B = np.ones(4, dtype=np.float32)
# Version 2 of add_sub answers the other way round (tells the versions apart).
SUB_ADD_PY = ADD_SUB_PY.replace("a + b), pb_utils.Tensor", "a - b), pb_utils.Tensor", 1)
SUB_ADD_PY = SUB_ADD_PY.replace('"OUTPUT1", a - b', '"OUTPUT1", a + b')
IDENTITY = ADD_SUB.replace('name: "add_sub"', 'name: "identity"')
IDENTITY_PY = ADD_SUB_PY.replace("a + b", "a").replace("a - b", "b")

ADDED = [(A + B).tolist(), (A - B).tolist()]
SUBTRACTED = [(A - B).tolist(), (A + B).tolist()]
PASSED = [A.tolist(), B.tolist()]


class Bucket(Protocol):
    """A bucket of a storage service on loopback (objectstores.py)."""

    def location(self, prefix: str) -> str: ...
    def put(self, key: str, data: bytes | str) -> None: ...
    def upload_tree(self, prefix: str, root: Path) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def unique_prefix(self) -> str: ...


def put_model(
    bucket: Bucket, prefix: str, name: str, config: str, code: str, version: int = 1
) -> None:
    bucket.put(f"{prefix}/{name}/config.pbtxt", config)
    bucket.put(f"{prefix}/{name}/{version}/model.py", code)


def http_json(server: RunningServer, path: str, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://{server.http_url}{path}",
        method=method,
        data=b"" if method == "POST" else None,
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            body = reply.read()
            return reply.status, json.loads(body) if body else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def index(server: RunningServer) -> list[tuple[str, str, str]]:
    """(name, version, state) rows. Triton may still be UNLOADING a replaced
    version when the load that replaced it has answered; both end UNAVAILABLE."""
    _, rows = http_json(server, "/v2/repository/index", "POST")
    states = {"UNLOADING": "UNAVAILABLE"}
    return [
        (
            r["name"],
            r.get("version", ""),
            states.get(r.get("state", ""), r.get("state", "")),
        )
        for r in rows
    ]


def infer(
    server: RunningServer, model: str, protocol: str = "http", batch: bool = False
) -> Any:
    """The two outputs of ``model`` for (A, B) (a batch of one when ``batch``),
    or the error's text."""
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    client = module.InferenceServerClient(url)
    shape = [1, 4] if batch else [4]
    inputs = [module.InferInput(n, shape, "FP32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(A.reshape(shape))
    inputs[1].set_data_from_numpy(B.reshape(shape))
    try:
        result = client.infer(model, inputs)
    except InferenceServerException as error:
        return error.message()
    finally:
        client.close()
    return [result.as_numpy(n).reshape(4).tolist() for n in ("OUTPUT0", "OUTPUT1")]


def control(server: RunningServer, action: str, model: str) -> tuple[int, Any]:
    return http_json(server, f"/v2/repository/models/{model}/{action}", "POST")


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Polls ``check`` until it holds (a poll round of the server has to run)."""
    deadline = time.monotonic() + 90
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def start_failure(kind: str, location: str) -> str:
    """The 'error: creating server: ...' line of a server that must not start."""
    ports = [
        f"--{n}-port={p}"
        for n, p in zip(("http", "grpc", "metrics"), free_ports(3), strict=True)
    ]
    done = subprocess.run(
        [*launch_command(kind), f"--model-repository={location}", *ports],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    line = next(x for x in output.splitlines() if "error: creating server:" in x)
    return line[line.index("error: creating server:") :].rstrip('"')


def serving(kind: str, location: str) -> dict[str, Any]:
    """Index, add_sub's inputs and answers of a server on a repository holding
    add_sub and identity (put_repository)."""
    with run_either(kind, location) as server:
        _, config = http_json(server, "/v2/models/add_sub/config")
        return {
            "index": index(server),
            "inputs": [i["name"] for i in config["input"]],
            "http add_sub": infer(server, "add_sub"),
            "grpc add_sub": infer(server, "add_sub", "grpc"),
            "grpc identity": infer(server, "identity", "grpc"),
        }


def put_repository(bucket: Bucket, prefix: str) -> None:
    """add_sub and identity, with a plain file beside them that is no model."""
    put_model(bucket, prefix, "add_sub", ADD_SUB, ADD_SUB_PY)
    put_model(bucket, prefix, "identity", IDENTITY, IDENTITY_PY)
    bucket.put(f"{prefix}/README.md", "plain files beside the models are not models")


def check_serving(seen: dict[str, Any]) -> None:
    assert seen["index"] == [("add_sub", "1", "READY"), ("identity", "1", "READY")]
    assert seen["inputs"] == ["INPUT0", "INPUT1"]
    assert seen["http add_sub"] == seen["grpc add_sub"] == ADDED
    assert seen["grpc identity"] == PASSED


def explicit_loads_follow(bucket: Bucket) -> None:
    """Loads read the bucket as it is now: new models, new versions, models gone."""

    def scenario(kind: str) -> dict[str, Any]:
        prefix = bucket.unique_prefix()
        put_model(bucket, prefix, "add_sub", ADD_SUB, ADD_SUB_PY)
        seen: dict[str, Any] = {}
        with run_either(
            kind, bucket.location(prefix), "--model-control-mode=explicit"
        ) as server:
            seen["start"] = index(server)
            seen["load add_sub"] = control(server, "load", "add_sub")
            seen["v1"] = infer(server, "add_sub")
            put_model(bucket, prefix, "identity", IDENTITY, IDENTITY_PY)
            seen["index with identity"] = index(server)
            seen["load identity"] = control(server, "load", "identity")
            seen["identity"] = infer(server, "identity", "grpc")
            put_model(bucket, prefix, "add_sub", ADD_SUB, SUB_ADD_PY, version=2)
            seen["reload add_sub"] = control(server, "load", "add_sub")
            seen["v2"] = infer(server, "add_sub")
            seen["index v2"] = index(server)
            bucket.delete_prefix(f"{prefix}/identity")
            seen["index without identity"] = index(server)
            seen["load gone"] = control(server, "load", "identity")
            seen["missing"] = control(server, "load", "nothing_here")
        return seen

    seen = differential(scenario)
    assert seen["start"] == [("add_sub", "", "")]
    assert seen["load add_sub"] == (200, None)
    assert seen["v1"] == ADDED
    assert ("identity", "", "") in seen["index with identity"]
    assert seen["identity"] == PASSED
    assert seen["v2"] == SUBTRACTED
    assert ("add_sub", "2", "READY") in seen["index v2"]
    assert seen["load gone"][0] == 500  # Triton's status for a failed poll
    assert "failed to poll from model repository" in seen["load gone"][1]["error"]


def poll_mode_follows(bucket: Bucket) -> None:
    """Poll rounds see models added, changed and removed in the bucket."""

    def scenario(kind: str) -> dict[str, Any]:
        prefix = bucket.unique_prefix()
        put_model(bucket, prefix, "add_sub", ADD_SUB, ADD_SUB_PY)
        seen: dict[str, Any] = {}
        with run_either(
            kind,
            bucket.location(prefix),
            "--model-control-mode=poll",
            "--repository-poll-secs=1",
        ) as server:
            seen["start"] = index(server)
            put_model(bucket, prefix, "identity", IDENTITY, IDENTITY_PY)
            wait_until(lambda: infer(server, "identity") == PASSED, "identity to load")
            put_model(bucket, prefix, "add_sub", ADD_SUB, SUB_ADD_PY, version=2)
            wait_until(lambda: infer(server, "add_sub") == SUBTRACTED, "version 2")
            seen["index v2"] = index(server)
            bucket.delete_prefix(f"{prefix}/identity")
            wait_until(lambda: infer(server, "identity") != PASSED, "identity to go")
            seen["identity gone"] = infer(server, "identity", "grpc")
            seen["end"] = index(server)
        return seen

    seen = differential(scenario)
    assert seen["start"] == [("add_sub", "1", "READY")]
    assert ("add_sub", "2", "READY") in seen["index v2"]
    assert "unknown model" in seen["identity gone"] or "not" in seen["identity gone"]
    assert seen["end"] == [("add_sub", "1", "UNAVAILABLE"), ("add_sub", "2", "READY")]


def onnx_weights_come_from(bucket: Bucket) -> None:
    """A framework model's file is downloaded before its backend opens it
    (tritonx only: the reference has no onnxruntime backend)."""
    prefix = bucket.unique_prefix()
    bucket.upload_tree(
        f"{prefix}/simple_onnx",
        Path(__file__).parents[2] / "model_repository" / "simple_onnx",
    )
    with run_either("tritonx", bucket.location(prefix)) as server:
        assert index(server) == [("simple_onnx", "1", "READY")]
        assert infer(server, "simple_onnx", batch=True) == ADDED


def empty_bucket_serves_nothing(location: str) -> None:
    """A bucket's root is a directory even with nothing in it: the server starts
    with no models (a prefix with nothing below it is refused instead)."""

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, location) as server:
            return {"index": index(server)}

    assert differential(scenario) == {"index": []}
