"""Object storage services on loopback for the cloud-repository tests: moto's S3
server (a real HTTP server speaking S3's REST API, which boto3 and Triton's AWS
SDK both talk to) and gcp-storage-emulator (GCS's JSON API, which the Python
client and Triton's google-cloud-cpp both reach through their emulator
variables; it takes any credentials or none). With ``authenticate`` requests must be signed with the access
key made for the test; moto 5 then refuses (SignatureDoesNotMatch) any listing
whose prefix holds a '/', so only a repository at a bucket's root can be read
(Triton cannot: it lists each model directory by prefix). Tests skip when a
service's package is not installed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from serverutil import free_ports

REGION = "us-east-1"
# Requests moto serves before it checks signatures: the three that make the
# test's IAM user, its access key and its policy.
_UNSIGNED_SETUP_REQUESTS = 3


@dataclass
class S3Service:
    """A bucket on the moto server; ``client`` is a boto3 S3 client; ``env`` the
    AWS_* variables of the one access key the server accepts."""

    port: int
    bucket: str
    client: Any
    env: dict[str, str]

    def location(self, prefix: str) -> str:
        """The repository location Triton's syntax gives a prefix of the bucket."""
        return f"s3://127.0.0.1:{self.port}/{self.bucket}/{prefix}"

    def put(self, key: str, data: bytes | str) -> None:
        body = data.encode() if isinstance(data, str) else data
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def upload_tree(self, prefix: str, root: Path) -> None:
        _upload_tree(self.put, prefix, root)

    def delete_prefix(self, prefix: str) -> None:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix + "/")
        for item in listed.get("Contents", []):
            self.client.delete_object(Bucket=self.bucket, Key=item["Key"])

    def unique_prefix(self) -> str:
        return f"repo-{uuid.uuid4().hex[:8]}"


def _upload_tree(put: Callable[[str, bytes], None], prefix: str, root: Path) -> None:
    """Every file below ``root`` under ``prefix`` (caches left out)."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            put(f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())


@contextmanager
def moto_s3(authenticate: bool = False) -> Iterator[S3Service]:
    """A moto S3 server on a free loopback port with one bucket, until exit."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    boto3 = pytest.importorskip("boto3")
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "INITIAL_NO_AUTH_ACTION_COUNT": str(
                _UNSIGNED_SETUP_REQUESTS if authenticate else "inf"
            ),
        },
    )
    try:
        _wait_for_port(process, port, "moto's S3 server")
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="tritonx")
        key = iam.create_access_key(UserName="tritonx")["AccessKey"]
        iam.put_user_policy(
            UserName="tritonx",
            PolicyName="everything",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        env = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_DEFAULT_REGION": REGION,
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket="models")
        yield S3Service(port, "models", client, env)
    finally:
        _stop(process)


@dataclass
class GcsService:
    """The bucket ``models`` of a GCS emulator at ``endpoint`` (an http:// URL);
    ``client`` is an anonymous google-cloud-storage client of it."""

    endpoint: str
    bucket: str
    client: Any

    def location(self, prefix: str) -> str:
        return f"gs://{self.bucket}/{prefix}"

    @property
    def env(self) -> dict[str, str]:
        """What sends a server's GCS requests (tritonx's and Triton's) here."""
        return {"CLOUD_STORAGE_EMULATOR_ENDPOINT": self.endpoint}

    def put(self, key: str, data: bytes | str) -> None:
        self.client.bucket(self.bucket).blob(key).upload_from_string(data)

    def upload_tree(self, prefix: str, root: Path) -> None:
        _upload_tree(self.put, prefix, root)

    def delete_prefix(self, prefix: str) -> None:
        for blob in list(self.client.list_blobs(self.bucket, prefix=prefix + "/")):
            blob.delete()

    def unique_prefix(self) -> str:
        return f"repo-{uuid.uuid4().hex[:8]}"


@contextmanager
def gcs_emulator() -> Iterator[GcsService]:
    """gcp-storage-emulator (in memory) on a free loopback port with the bucket
    ``models``, until exit."""
    pytest.importorskip(
        "gcp_storage_emulator", reason="gcp-storage-emulator is not installed"
    )
    storage = pytest.importorskip("google.cloud.storage")
    from google.auth.credentials import AnonymousCredentials

    (port,) = free_ports(1)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
            "--in-memory",
            "--default-bucket=models",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(process, port, "the GCS emulator")
        endpoint = f"http://127.0.0.1:{port}"
        client = storage.Client(
            project=None,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
        yield GcsService(endpoint, "models", client)
    finally:
        _stop(process)


def _wait_for_port(process: subprocess.Popen[bytes], port: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:  # a connection, not a request (moto counts requests as setup ones)
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
