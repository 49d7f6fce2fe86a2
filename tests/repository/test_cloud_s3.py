"""Model repositories in S3 (``--model-repository=s3://...``), served from moto's S3
server on loopback, through the wire, against the real Triton 2.51 reading the same
bucket when TRITONX_REFERENCE_CMD is set.

Covers Triton's location forms (an addressed service, http:// in front, extra
slashes), start-up failures, explicit loads and poll mode following what changes in
the bucket, the credential file, and a framework model's weights downloaded.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cloudutil import JSON_ANSWER, JSON_REQUEST, call, launch_command, wait_for_port
from objectstores import S3Service, moto_s3
from serverutil import (
    RunningServer,
    free_ports,
    reference_command,
    run_either,
    server_env,
)
from testmodels import ADD_SUB, ADD_SUB_PY
from tritonclient.utils import InferenceServerException

KINDS = ("tritonx", "reference")
A = np.arange(4, dtype=np.float32)
B = np.ones(4, dtype=np.float32)
# Version 2 of add_sub answers the other way round (tells the versions apart).
SUB_ADD_PY = ADD_SUB_PY.replace("a + b), pb_utils.Tensor", "a - b), pb_utils.Tensor", 1)
SUB_ADD_PY = SUB_ADD_PY.replace('"OUTPUT1", a - b', '"OUTPUT1", a + b')
IDENTITY = """
name: "identity"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
        { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
         { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
IDENTITY_PY = ADD_SUB_PY.replace("a + b", "a").replace("a - b", "b")


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Service]:
    with moto_s3() as service:
        yield service


@pytest.fixture(autouse=True)
def aws_environment(s3: S3Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both servers inherit the test's environment: the bucket's credentials."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    for name in ("TRITON_CLOUD_CREDENTIAL_PATH", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def put_model(
    s3: S3Service, prefix: str, name: str, config: str, code: str, version: int = 1
) -> None:
    s3.put(f"{prefix}/{name}/config.pbtxt", config)
    s3.put(f"{prefix}/{name}/{version}/model.py", code)


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


def differential(scenario: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """tritonx's observations, checked equal to the reference's when it runs."""
    seen = scenario("tritonx")
    if reference_command() is not None:
        assert seen == scenario("reference")
    return seen


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Polls ``check`` until it holds (a poll round of the server has to run)."""
    deadline = time.monotonic() + 90
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


ADDED = [(A + B).tolist(), (A - B).tolist()]
SUBTRACTED = [(A - B).tolist(), (A + B).tolist()]
PASSED = [A.tolist(), B.tolist()]


@pytest.mark.parametrize(
    "form",
    [
        "s3://127.0.0.1:{port}/models/{prefix}",
        "s3://http://127.0.0.1:{port}//models//{prefix}/",
    ],
    ids=["addressed", "http-and-extra-slashes"],
)
def test_serves_a_repository_in_s3(s3: S3Service, form: str) -> None:
    prefix = s3.unique_prefix()
    put_model(s3, prefix, "add_sub", ADD_SUB, ADD_SUB_PY)
    put_model(s3, prefix, "identity", IDENTITY, IDENTITY_PY)
    s3.put(f"{prefix}/README.md", "plain files beside the models are not models")
    location = form.format(port=s3.port, prefix=prefix)

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, location) as server:
            _, config = http_json(server, "/v2/models/add_sub/config")
            return {
                "index": index(server),
                "inputs": [i["name"] for i in config["input"]],
                "http add_sub": infer(server, "add_sub"),
                "grpc add_sub": infer(server, "add_sub", "grpc"),
                "grpc identity": infer(server, "identity", "grpc"),
            }

    seen = differential(scenario)
    assert seen["index"] == [("add_sub", "1", "READY"), ("identity", "1", "READY")]
    assert seen["http add_sub"] == seen["grpc add_sub"] == ADDED
    assert seen["grpc identity"] == PASSED


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


def test_start_up_failures(s3: S3Service) -> None:
    prefix = s3.unique_prefix()
    put_model(s3, prefix, "add_sub", ADD_SUB, ADD_SUB_PY)
    cases = {
        "no bucket": f"s3://127.0.0.1:{s3.port}/no-such-bucket/{prefix}",
        "no prefix": f"s3://127.0.0.1:{s3.port}/models/{prefix}-missing",
        "a file": f"s3://127.0.0.1:{s3.port}/models/{prefix}/add_sub/config.pbtxt",
    }

    def scenario(kind: str) -> dict[str, Any]:
        seen = {case: start_failure(kind, where) for case, where in cases.items()}
        # What the service said after "Exception:" is the client library's words.
        seen["no bucket"] = seen["no bucket"].split(" Exception:")[0]
        return seen

    seen = differential(scenario)
    assert seen == {
        "no bucket": "error: creating server: Internal - Unable to create S3 "
        "filesystem client. Check account credentials.",
        "no prefix": "error: creating server: Invalid argument - repository path "
        "is not a valid directory",
        "a file": "error: creating server: Invalid argument - repository path is "
        "not a valid directory",
    }


def control(server: RunningServer, action: str, model: str) -> tuple[int, Any]:
    return http_json(server, f"/v2/repository/models/{model}/{action}", "POST")


def test_explicit_loads_follow_the_bucket(s3: S3Service) -> None:
    """Loads read the bucket as it is now: new models, new versions, models gone."""

    def scenario(kind: str) -> dict[str, Any]:
        prefix = s3.unique_prefix()
        put_model(s3, prefix, "add_sub", ADD_SUB, ADD_SUB_PY)
        seen: dict[str, Any] = {}
        with run_either(
            kind, s3.location(prefix), "--model-control-mode=explicit"
        ) as server:
            seen["start"] = index(server)
            seen["load add_sub"] = control(server, "load", "add_sub")
            seen["v1"] = infer(server, "add_sub")
            put_model(s3, prefix, "identity", IDENTITY, IDENTITY_PY)
            seen["index with identity"] = index(server)
            seen["load identity"] = control(server, "load", "identity")
            seen["identity"] = infer(server, "identity", "grpc")
            put_model(s3, prefix, "add_sub", ADD_SUB, SUB_ADD_PY, version=2)
            seen["reload add_sub"] = control(server, "load", "add_sub")
            seen["v2"] = infer(server, "add_sub")
            seen["index v2"] = index(server)
            s3.delete_prefix(f"{prefix}/identity")
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


def test_poll_mode_follows_the_bucket(s3: S3Service) -> None:
    """Poll rounds see models added, changed and removed in the bucket."""

    def scenario(kind: str) -> dict[str, Any]:
        prefix = s3.unique_prefix()
        put_model(s3, prefix, "add_sub", ADD_SUB, ADD_SUB_PY)
        seen: dict[str, Any] = {}
        with run_either(
            kind,
            s3.location(prefix),
            "--model-control-mode=poll",
            "--repository-poll-secs=1",
        ) as server:
            seen["start"] = index(server)
            put_model(s3, prefix, "identity", IDENTITY, IDENTITY_PY)
            wait_until(lambda: infer(server, "identity") == PASSED, "identity to load")
            put_model(s3, prefix, "add_sub", ADD_SUB, SUB_ADD_PY, version=2)
            wait_until(lambda: infer(server, "add_sub") == SUBTRACTED, "version 2")
            seen["index v2"] = index(server)
            s3.delete_prefix(f"{prefix}/identity")
            wait_until(lambda: infer(server, "identity") != PASSED, "identity to go")
            seen["identity gone"] = infer(server, "identity", "grpc")
            seen["end"] = index(server)
        return seen

    seen = differential(scenario)
    assert seen["start"] == [("add_sub", "1", "READY")]
    assert ("add_sub", "2", "READY") in seen["index v2"]
    assert "unknown model" in seen["identity gone"] or "not" in seen["identity gone"]
    assert seen["end"] == [("add_sub", "1", "UNAVAILABLE"), ("add_sub", "2", "READY")]


def test_onnx_weights_come_from_the_bucket(s3: S3Service) -> None:
    """A framework model's file is downloaded before its backend opens it."""
    prefix = s3.unique_prefix()
    s3.upload_tree(
        f"{prefix}/simple_onnx",
        Path(__file__).parents[2] / "model_repository" / "simple_onnx",
    )
    with run_either("tritonx", s3.location(prefix)) as server:
        assert index(server) == [("simple_onnx", "1", "READY")]
        assert infer(server, "simple_onnx", batch=True) == ADDED


def test_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_* in the environment, or TRITON_CLOUD_CREDENTIAL_PATH's entry with the
    longest prefix of the location ("" matches any), which wins over AWS_*.

    On a moto server that checks signatures, so a wrong key is refused; there
    only a bucket-root repository can be read (objectstores.py), which Triton
    2.51 cannot list: tritonx only."""
    with moto_s3(authenticate=True) as signed:
        signed.put("add_sub/config.pbtxt", ADD_SUB)
        signed.put("add_sub/1/model.py", ADD_SUB_PY)
        location = f"s3://127.0.0.1:{signed.port}/{signed.bucket}"
        good = {
            "key_id": signed.env["AWS_ACCESS_KEY_ID"],
            "secret_key": signed.env["AWS_SECRET_ACCESS_KEY"],
            "region": signed.env["AWS_DEFAULT_REGION"],
        }
        wrong = {**good, "secret_key": "not-the-secret"}
        credentials = tmp_path / "credentials.json"
        files = {
            "longest prefix right": {"s3": {"": wrong, location[:25]: good}},
            "any location right": {"s3": {"": good, "s3://elsewhere": wrong}},
            "longest prefix wrong": {"s3": {"": good, location[:25]: wrong}},
        }
        seen: dict[str, Any] = {}
        for name, value in signed.env.items():
            monkeypatch.setenv(name, value)
        with run_either("tritonx", location) as server:
            seen["right environment"] = infer(server, "add_sub")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        seen["wrong environment"] = start_failure("tritonx", location)
        monkeypatch.setenv("TRITON_CLOUD_CREDENTIAL_PATH", str(credentials))
        for case, content in files.items():
            credentials.write_text(json.dumps(content))
            if case.endswith("right"):
                with run_either("tritonx", location) as server:
                    seen[case] = infer(server, "add_sub")
            else:
                seen[case] = start_failure("tritonx", location)
    refused = (
        "error: creating server: Internal - Unable to create S3 filesystem client. "
        "Check account credentials. Exception: '403' Message: 'Forbidden'"
    )
    assert seen == {
        "right environment": ADDED,
        "wrong environment": refused,
        "longest prefix right": ADDED,
        "any location right": ADDED,
        "longest prefix wrong": refused,
    }


def test_mirror_downloads_only_what_changed(s3: S3Service, tmp_path: Path) -> None:
    """The mirror behind a cloud repository: a second fetch downloads nothing, a
    changed object replaces its file only, objects gone take their files and
    directories along, and files a model wrote itself stay."""
    from tritonx.repository.cloud.mirror import CloudMirror
    from tritonx.repository.cloud.s3 import S3Store

    prefix = s3.unique_prefix()
    put_model(s3, prefix, "add_sub", ADD_SUB, ADD_SUB_PY)
    s3.put(f"{prefix}/add_sub/2/model.py", SUB_ADD_PY)
    s3.put(f"{prefix}/add_sub/empty/", b"")  # a console's folder marker
    mirror = CloudMirror(S3Store(s3.location(prefix), s3.env), tmp_path)
    root = mirror.refresh()
    assert root == tmp_path and sorted(p.name for p in root.iterdir()) == ["add_sub"]
    model = root / "add_sub"
    assert not any(model.iterdir())  # listed, nothing downloaded yet
    mirror.fetch(model)
    files = sorted(p.relative_to(model).as_posix() for p in model.rglob("*"))
    assert files == ["1", "1/model.py", "2", "2/model.py", "config.pbtxt", "empty"]
    assert (model / "1" / "model.py").read_text() == ADD_SUB_PY
    (model / "1" / "__pycache__").mkdir()  # what importing model.py leaves
    inodes = {p: p.stat().st_ino for p in model.rglob("*.p*")}
    mirror.refresh()
    mirror.fetch(model)
    assert {p: p.stat().st_ino for p in model.rglob("*.p*")} == inodes
    s3.put(f"{prefix}/add_sub/1/model.py", SUB_ADD_PY)
    s3.client.delete_object(Bucket=s3.bucket, Key=f"{prefix}/add_sub/2/model.py")
    mirror.refresh()
    mirror.fetch(model)
    assert (model / "1" / "model.py").read_text() == SUB_ADD_PY
    assert (model / "config.pbtxt").stat().st_ino == inodes[model / "config.pbtxt"]
    assert not (model / "2").exists() and (model / "1" / "__pycache__").is_dir()
    s3.delete_prefix(f"{prefix}/add_sub")
    mirror.refresh()
    assert not model.exists()
    mirror.close()
    assert not tmp_path.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_vertex_ai_storage_uri_names_the_bucket(s3: S3Service, kind: str) -> None:
    """Vertex AI hands a model over as AIP_STORAGE_URI: with no --model-repository
    the server reads the repository from that bucket location."""
    prefix = s3.unique_prefix()
    put_model(s3, prefix, "add_sub", ADD_SUB, ADD_SUB_PY)
    port, metrics = free_ports(2)
    env = server_env(
        {
            "AIP_MODE": "PREDICTION",
            "AIP_HTTP_PORT": str(port),
            "AIP_STORAGE_URI": s3.location(prefix),
            "AIP_HEALTH_ROUTE": "/health",
            "AIP_PREDICT_ROUTE": "/predict",
        }
    )
    process = subprocess.Popen(
        [*launch_command(kind), f"--metrics-port={metrics}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, timeout=120)
        wait_until(lambda: call(port, "GET", "/health").status == 200, "ready")
        answer = call(port, "POST", "/predict", JSON_REQUEST)
    finally:
        process.terminate()
        process.communicate(timeout=60)
    assert (answer.status, answer.body) == (200, JSON_ANSWER)
