"""Google Cloud Storage repositories: ``gs://bucket/path``, as Triton reads them.

The bucket is the text up to the first '/' after the scheme and the rest is an
object-name prefix: GCS has no directories, so a "directory" is every object
whose name starts with the path and a '/' (the bucket's root when no path is
given). Unlike s3:// locations, Triton does not tidy repeated slashes here.

Credentials, first that applies: the credential file's "gs" entry (its value is
the path of a Google JSON credential file, service account or authorized user),
GOOGLE_APPLICATION_CREDENTIALS, then the library's default chain (gcloud's
application-default file, the metadata server of a Google VM); without any the
client goes anonymous, which reads public buckets only, as Triton's does.

Emulators: CLOUD_STORAGE_EMULATOR_ENDPOINT (read by google-cloud-cpp, so Triton
honours it) or STORAGE_EMULATOR_HOST (read by the Python client) sends every
request to that address. There the default chain is skipped (an emulator takes
no tokens and probing the metadata server off Google's cloud only costs
seconds): requests go anonymous unless a credential file is named explicitly.

Downloads: one request an object, streamed to the file, checked by the library
against the crc32c the service sends (md5 without the google-crc32c C extension).
The client reads a response 8 KiB at a time, each piece checksummed and written
on its own; this module raises that to 256 KiB (``_widen_reads``), which made a
start-up's downloads 4x faster (benchmarks/bench_cloud_repository.py).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonx.repository.cloud.credentials import credential_for
from tritonx.repository.cloud.objects import CloudStorageError, StoredObject

SCHEME = "gs://"
# Triton's wording when no client can be made from the credentials.
_NO_CLIENT = "Unable to create GCS client. Check account credentials."
# The emulator variables, Triton's (google-cloud-cpp's) first.
EMULATOR_ENVS = ("CLOUD_STORAGE_EMULATOR_ENDPOINT", "STORAGE_EMULATOR_HOST")
# Listing page size: the service's maximum, so a large repository takes few
# requests (the client follows the page tokens).
_PAGE_SIZE = 1000
# Seconds the client keeps retrying transient failures (connection refused,
# 429/5xx) of one call; its default, two minutes, would stall a start-up
# against an unreachable endpoint for that long.
_RETRY_SECONDS = 30.0
# Seconds for one HTTP request (connect and read).
_REQUEST_TIMEOUT = 60.0
# Bytes per read of a download's response, in place of the client's 8 KiB. Measured
# on 4 x 128 MiB from the emulator, 2 files at once, with the server's malloc and
# GIL settings (2 CPUs): 8 KiB 1.56 s (its per-piece Python and syscalls),
# 64 KiB 0.60 s, 256 KiB 0.38 s, 1 MiB 0.50 s (from 1 MiB up every read is a
# fresh allocation whose pages fault in, the server's mmap threshold being 4 MiB
# and glibc trimming freed heap tops). Reading whole 16 MiB ranges in one piece
# (transfer_manager's sliced downloads) took 1.3 s for that reason; 32 MiB
# slices read 256 KiB at a time 0.69 s (the ranges cost the service copies).
_READ_BYTES = 256 << 10
# The client's own read size, the one value replaced, and where it is kept: the
# client's own copy of the download code since 3.0, google-resumable-media before.
_CLIENT_READ_BYTES = 8192
_CLIENT_READ_MODULES = (
    "google.cloud.storage._media.requests._request_helpers",
    "google.resumable_media.requests._request_helpers",
)


@dataclass(frozen=True)
class GcsLocation:
    bucket: str
    prefix: str  # object-name prefix of the repository's objects; "" for the root


def parse_location(location: str) -> GcsLocation:
    """The bucket and the object prefix of a gs:// location."""
    bucket, _, path = location.removeprefix(SCHEME).partition("/")
    if not bucket:
        raise CloudStorageError(f"No bucket name found in path: {location}")
    # A directory's objects are those named "<path>/..."; an existing trailing
    # slash is kept as it is, as Triton appends one only when it is missing.
    prefix = path if not path or path.endswith("/") else path + "/"
    return GcsLocation(bucket, prefix)


def emulator_endpoint(env: Mapping[str, str]) -> str | None:
    """The emulator's base URL when one is configured (http:// unless a scheme is
    written, as the Python client assumes)."""
    for name in EMULATOR_ENVS:
        value = env.get(name, "").strip()
        if value:
            return value if "://" in value else f"http://{value}"
    return None


def _credentials(location: str, env: Mapping[str, str], emulated: bool) -> Any:
    """google-auth credentials for the location (see the module's docstring)."""
    from google.auth import default, load_credentials_from_file
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError

    entry = credential_for("gs", location, env)
    if entry is not None and not isinstance(entry, str):
        raise CloudStorageError(
            f"{_NO_CLIENT} The gs entry of the credential file for {location} must "
            "be the path of a Google JSON credential file"
        )
    # An entry, even an empty one, rules out the environment's file (Triton
    # reads GOOGLE_APPLICATION_CREDENTIALS only when no credential file is set).
    named = entry if entry is not None else env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if named:
        # Triton quietly goes anonymous when the named file cannot be read; a
        # typo in a credential path is better reported than turned into 403s.
        try:
            credentials, _ = load_credentials_from_file(named)
        except (DefaultCredentialsError, OSError, ValueError) as error:
            raise CloudStorageError(f"{_NO_CLIENT} {error}") from None
        return credentials
    if emulated:
        return AnonymousCredentials()
    try:
        credentials, _ = default()
    except DefaultCredentialsError:
        return AnonymousCredentials()
    return credentials


def _widen_reads() -> None:
    """Read downloads ``_READ_BYTES`` at a time (see there). The client takes its
    read size from a module constant and offers no argument for it, so the
    constant is raised, for the whole process: only where it still has the
    client's value (a release that changed it is left alone) and only upwards,
    which changes how many bytes each read asks for, never what is downloaded
    or checked."""
    for name in _CLIENT_READ_MODULES:
        try:
            helpers = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(helpers, "_SINGLE_GET_CHUNK_SIZE", None) == _CLIENT_READ_BYTES:
            helpers._SINGLE_GET_CHUNK_SIZE = _READ_BYTES  # type: ignore[attr-defined]
        return


def _client(location: str, env: Mapping[str, str]) -> Any:
    try:
        from google.cloud import storage
    except ImportError:
        raise CloudStorageError(
            "gs:// model repositories need google-cloud-storage: "
            "pip install 'tritonx[gcs]'"
        ) from None
    _widen_reads()
    endpoint = emulator_endpoint(env)
    credentials = _credentials(location, env, emulated=endpoint is not None)
    try:
        # project=None: the calls made here name their bucket, so no project
        # is looked up (which could query the metadata server).
        return storage.Client(
            project=None,
            credentials=credentials,
            client_options={"api_endpoint": endpoint} if endpoint else None,
        )
    except Exception as error:
        raise CloudStorageError(f"{_NO_CLIENT} {_describe(error)}") from None


def _describe(error: Exception) -> str:
    """What the service (or the transport) said, without the exception's class
    name when it is an API error (whose text starts with the HTTP status)."""
    from google.api_core.exceptions import GoogleAPICallError

    if isinstance(error, GoogleAPICallError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _updated_ns(blob: Any) -> int:
    updated = getattr(blob, "updated", None)
    return int(updated.timestamp() * 1_000_000_000) if updated is not None else 0


def _version(blob: Any) -> str:
    """The generation changes with every write of an object; md5 or the etag
    stand in where a service omits it."""
    for value in (blob.generation, blob.md5_hash, blob.etag):
        if value:
            return str(value)
    return ""


class GcsStore:
    """An ObjectStore over google-cloud-storage.

    Thread-safe: one client serves every thread (google-cloud-storage documents
    its requests-based client as safe to share across threads; each call makes
    its own Blob/Bucket objects, nothing mutable is shared here)."""

    def __init__(self, location: str, env: Mapping[str, str] = os.environ) -> None:
        self.location = location
        self._where = parse_location(location)
        self._client = _client(location, env)
        from google.cloud.storage.retry import DEFAULT_RETRY

        self._retry = DEFAULT_RETRY.with_timeout(_RETRY_SECONDS)

    @property
    def at_bucket_root(self) -> bool:
        return not self._where.prefix

    def check(self) -> None:
        try:
            self._client.get_bucket(
                self._where.bucket, retry=self._retry, timeout=_REQUEST_TIMEOUT
            )
        except Exception as error:
            # Triton's message (status Internal) with the service's own words.
            raise CloudStorageError(
                "Could not get MetaData for bucket with name "
                f"{self._where.bucket} : {_describe(error)}"
            ) from None

    def list_objects(self) -> list[StoredObject]:
        prefix = self._where.prefix
        found = []
        try:
            blobs = self._client.list_blobs(
                self._where.bucket,
                prefix=prefix or None,
                page_size=_PAGE_SIZE,
                retry=self._retry,
                timeout=_REQUEST_TIMEOUT,
            )
            for blob in blobs:
                key = blob.name[len(prefix) :]
                if key:  # the repository's own directory marker is not content
                    found.append(
                        StoredObject(
                            key=key,
                            size=int(blob.size or 0),
                            version=_version(blob),
                            modified_ns=_updated_ns(blob),
                        )
                    )
        except Exception as error:
            raise CloudStorageError(
                f"Could not list contents of directory at {self.location} : "
                f"{_describe(error)}"
            ) from None
        return found

    def download(self, key: str, target: Path) -> None:
        blob = self._client.bucket(self._where.bucket).blob(self._where.prefix + key)
        try:
            blob.download_to_filename(
                str(target), retry=self._retry, timeout=_REQUEST_TIMEOUT
            )
        except Exception as error:
            raise CloudStorageError(
                f"Failed to get object at {self.location.rstrip('/')}/{key} : "
                f"{_describe(error)}"
            ) from None
