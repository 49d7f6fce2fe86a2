"""Credentials for cloud repositories, as Triton looks them up.

``TRITON_CLOUD_CREDENTIAL_PATH`` names a JSON file with one object per service
("s3", "gs", "as"), each mapping a path prefix to that service's credential; the
longest prefix of a repository's location wins and "" matches every location.
Without the file each service falls back to its own environment variables (AWS_*,
GOOGLE_APPLICATION_CREDENTIALS); a file that has entries for the service but none
for the location stops the start, as in Triton (NOT_FOUND "Cannot match credential
for path ..."): credentials configured but not matched are a mistake, not a wish to
use the environment's.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from tritonx.errors import NotFoundError
from tritonx.repository.cloud.objects import CloudStorageError

log = logging.getLogger("tritonx.repository")

CREDENTIAL_PATH_ENV = "TRITON_CLOUD_CREDENTIAL_PATH"


def credential_for(
    service: str, location: str, env: Mapping[str, str] = os.environ
) -> Any | None:
    """The credential entry of ``service`` whose prefix is the longest one of
    ``location``; None when the file is not set or has nothing for ``service``,
    NotFoundError when it has entries for ``service`` but none matches."""
    path = env.get(CREDENTIAL_PATH_ENV, "")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError) as error:
        raise CloudStorageError(
            f"failed to read the cloud credential file {path}: {error}"
        ) from None
    entries = document.get(service) if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        return None
    matches = [prefix for prefix in entries if location.startswith(prefix)]
    if not matches:
        raise NotFoundError(f"Cannot match credential for path  {location}")
    best = max(matches, key=len)
    log.info("Using credential %r for path %s", best, location)
    return entries[best]
