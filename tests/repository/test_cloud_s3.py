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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloud_scenarios import (
    ADDED,
    SUB_ADD_PY,
    check_serving,
    differential,
    empty_bucket_serves_nothing,
    explicit_loads_follow,
    infer,
    onnx_weights_come_from,
    poll_mode_follows,
    put_model,
    put_repository,
    serving,
    start_failure,
    wait_until,
)
from cloudutil import JSON_ANSWER, JSON_REQUEST, call, launch_command, wait_for_port
from objectstores import S3Service, moto_s3
from serverutil import free_ports, run_either, server_env
from testmodels import ADD_SUB, ADD_SUB_PY

KINDS = ("tritonx", "reference")


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
    put_repository(s3, prefix)
    location = form.format(port=s3.port, prefix=prefix)
    check_serving(differential(lambda kind: serving(kind, location)))


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


def test_explicit_loads_follow_the_bucket(s3: S3Service) -> None:
    explicit_loads_follow(s3)


def test_poll_mode_follows_the_bucket(s3: S3Service) -> None:
    poll_mode_follows(s3)


def test_onnx_weights_come_from_the_bucket(s3: S3Service) -> None:
    onnx_weights_come_from(s3)


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


def test_an_empty_bucket_is_an_empty_repository(s3: S3Service) -> None:
    bucket = f"empty-{s3.unique_prefix()}"
    s3.client.create_bucket(Bucket=bucket)
    empty_bucket_serves_nothing(f"s3://127.0.0.1:{s3.port}/{bucket}")
