"""Amazon S3 (and S3-compatible services) repositories: ``s3://bucket/path`` or,
for a service at an address of its own, ``s3://[http://|https://]host:port/bucket/path``
(http unless https is written), as Triton parses them.

Credentials, first that applies: the credential file's "s3" entry (key_id,
secret_key, session_token, region, profile), AWS_ACCESS_KEY_ID with
AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN, AWS_DEFAULT_REGION), AWS_PROFILE, then
boto3's default chain (which also finds instance roles and web identities).
Requests use path-style addressing, which every S3-compatible service accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonx.repository.cloud.credentials import credential_for
from tritonx.repository.cloud.objects import CloudStorageError, StoredObject

SCHEME = "s3://"

# Triton's form with an explicit service address.
_ADDRESSED = re.compile(
    r"s3://(http://|https://|)([0-9a-zA-Z\-.]+):([0-9]+)/"
    r"([0-9a-z.\-]+)((?:/[0-9a-zA-Z.\-_]+)*)"
)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing '/'; "" for the bucket's root
    endpoint_url: str | None  # None: AWS itself


def clean_location(location: str) -> str:
    """Triton's clean-up: scheme kept, surrounding and repeated slashes dropped."""
    rest = location.removeprefix(SCHEME)
    cleaned = SCHEME if location.startswith(SCHEME) else ""
    for protocol in ("https://", "http://"):
        if rest.startswith(protocol):
            rest, cleaned = rest[len(protocol) :], cleaned + protocol
            break
    trimmed = rest.strip("/")
    if not trimmed:
        raise CloudStorageError(f"Invalid bucket name: '{rest}'")
    return cleaned + re.sub("/+", "/", trimmed)


def parse_location(location: str) -> S3Location:
    cleaned = clean_location(location)
    match = _ADDRESSED.fullmatch(cleaned)
    if match:
        protocol, host, port, bucket, path = match.groups()
        scheme = "https" if protocol == "https://" else "http"
        return S3Location(bucket, path.strip("/"), f"{scheme}://{host}:{port}")
    bucket, _, prefix = cleaned.removeprefix(SCHEME).partition("/")
    if not bucket:
        raise CloudStorageError(f"No bucket name found in path: {location}")
    return S3Location(bucket, prefix, None)


def _client(location: str, where: S3Location, env: Mapping[str, str]) -> Any:
    try:
        from botocore.config import Config
    except ImportError:
        raise CloudStorageError(
            "s3:// model repositories need boto3: pip install 'tritonx[s3]'"
        ) from None
    entry = credential_for("s3", location, env) or {}
    key_id = entry.get("key_id") or (None if entry else env.get("AWS_ACCESS_KEY_ID"))
    secret = entry.get("secret_key") or (
        None if entry else env.get("AWS_SECRET_ACCESS_KEY")
    )
    token = entry.get("session_token") or (
        None if entry else env.get("AWS_SESSION_TOKEN")
    )
    region = entry.get("region") if entry else env.get("AWS_DEFAULT_REGION")
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=16,
    )
    profile = entry.get("profile") or (None if entry else env.get("AWS_PROFILE"))
    try:
        return _session(key_id, secret, token, region, profile).client(
            "s3", endpoint_url=where.endpoint_url, config=config
        )
    except Exception as error:
        raise _no_client(error) from None


def _no_client(error: Exception) -> CloudStorageError:
    """Triton's words for a client that cannot reach the bucket."""
    name, message = _describe(error)
    return CloudStorageError(
        "Unable to create S3 filesystem client. Check account credentials. "
        f"Exception: '{name}' Message: '{message}'"
    )


def _session(
    key_id: str | None,
    secret: str | None,
    token: str | None,
    region: str | None,
    profile: str | None,
) -> Any:
    import boto3

    if key_id and secret:
        return boto3.session.Session(
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=token or None,
            region_name=region or None,
        )
    return boto3.session.Session(
        profile_name=profile or None, region_name=region or None
    )


def _describe(error: Exception) -> tuple[str, str]:
    """(exception name, message) of a botocore error, as Triton prints AWS's."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error", {})
        return str(details.get("Code", "")), str(details.get("Message", error))
    return type(error).__name__, str(error)


class S3Store:
    """An ObjectStore over boto3 (whose clients are thread-safe)."""

    def __init__(self, location: str, env: Mapping[str, str] = os.environ) -> None:
        self.location = location
        self._where = parse_location(location)
        self._client = _client(location, self._where, env)
        from boto3.s3.transfer import TransferConfig

        # Large parts: a file under 64 MiB is one GET, a larger one a few ranged
        # GETs in parallel. boto3's default (8 MiB parts, 10 threads) multiplies the
        # requests, and services that serve ranges slowly (moto, some gateways)
        # then read a 128 MiB file 8x slower than one GET does
        # (benchmarks/bench_cloud_repository.py).
        self._transfer = TransferConfig(
            multipart_threshold=64 << 20,
            multipart_chunksize=64 << 20,
            max_concurrency=8,
        )

    def _key_prefix(self) -> str:
        return self._where.prefix + "/" if self._where.prefix else ""

    @property
    def at_bucket_root(self) -> bool:
        return not self._where.prefix

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._where.bucket)
        except Exception as error:
            raise _no_client(error) from None

    def list_objects(self) -> list[StoredObject]:
        prefix = self._key_prefix()
        found = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._where.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(prefix) :]
                    if key:
                        found.append(
                            StoredObject(
                                key=key,
                                size=int(item.get("Size", 0)),
                                version=str(item.get("ETag", "")),
                                modified_ns=int(
                                    item["LastModified"].timestamp() * 1_000_000_000
                                ),
                            )
                        )
        except Exception as error:
            name, message = _describe(error)
            raise CloudStorageError(
                f"Could not list contents of directory at {self.location} due to "
                f"exception: {name}, error message: {message}"
            ) from None
        return found

    def download(self, key: str, target: Path) -> None:
        try:
            self._client.download_file(
                self._where.bucket,
                self._key_prefix() + key,
                str(target),
                Config=self._transfer,
            )
        except Exception as error:
            name, message = _describe(error)
            raise CloudStorageError(
                f"Failed to get object at {self.location}/{key} due to exception: "
                f"{name}, error message: {message}"
            ) from None
