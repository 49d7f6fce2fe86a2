"""Model repositories in cloud storage (``s3://``, ``gs://``, ``as://``), read
through a local mirror (mirror.py) so that the rest of the repository code deals
with directories only. One module per service; objects.py is their contract."""

from __future__ import annotations

import os
from collections.abc import Mapping

from tritonx.repository.cloud.objects import CloudStorageError, ObjectStore

# Scheme -> (the service's name in messages, the mount-directory variable Triton
# reads for where to localize its files).
SCHEMES = {
    "s3://": ("S3", "TRITON_AWS_MOUNT_DIRECTORY"),
    "gs://": ("GCS", "TRITON_GCS_MOUNT_DIRECTORY"),
    "as://": ("Azure", "TRITON_AZURE_MOUNT_DIRECTORY"),
}


def cloud_scheme(location: str) -> str | None:
    """The location's cloud scheme ("s3://", ...), None for a local path."""
    return next((s for s in SCHEMES if location.startswith(s)), None)


def open_store(location: str, env: Mapping[str, str] = os.environ) -> ObjectStore:
    """The store for a cloud location; CloudStorageError when the location is
    malformed, its credentials cannot be loaded or its service's client
    library is missing."""
    scheme = cloud_scheme(location)
    if scheme == "s3://":
        from tritonx.repository.cloud.s3 import S3Store

        return S3Store(location, env)
    if scheme == "gs://":
        from tritonx.repository.cloud.gcs import GcsStore

        return GcsStore(location, env)
    # Azure Blob Storage: no service runs here to test a client against (and
    # Triton 2.51 cannot be pointed at one either), so it is refused, not guessed.
    service = SCHEMES[scheme][0] if scheme else "this"
    raise CloudStorageError(
        f"model repository '{location}': {service} storage is not supported by "
        "tritonx; copy the repository to a local directory or to S3 or GCS"
    )


__all__ = ["SCHEMES", "CloudStorageError", "ObjectStore", "cloud_scheme", "open_store"]
