"""The built-in ``checksum`` repository agent: Triton's checksum_repository_agent.

Each parameter of the agent is one file to verify before the model loads: the key
is ``<algorithm>:<path relative to the model directory>``, the value the expected
digest as lowercase hex. MD5 is the only algorithm (the algorithm name is matched
case-insensitively); the digest comparison is exact, so an uppercase expected
value never matches, as in Triton. Messages and codes are the upstream agent's:

* key without ':'             -> INVALID_ARG "failed to parse key: <key>"
* other algorithm             -> UNSUPPORTED "Unsupported checksum algorithm: <alg>"
* file cannot be read         -> INVALID_ARG "failed to open text file for read
                                 <path>: <strerror>"
* digest differs              -> INVALID_ARG "Mismatched MD5 hash for file <path>,
                                 expect: <expected>, got: <actual>"

Parameters are checked in config order and the first failure fails the load.
Files are hashed in chunks (the upstream agent reads each whole file into memory).
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tritonx.errors import InvalidArgumentError, UnsupportedError
from tritonx.repository.agents import AgentAction, AgentModel

_CHUNK_BYTES = 1 << 20

# algorithm name (lowercase) -> (name in messages, hash constructor)
_ALGORITHMS: dict[str, tuple[str, Callable[[], Any]]] = {
    # usedforsecurity=False: FIPS builds of OpenSSL refuse MD5 otherwise; this is
    # an integrity check against accidents and tampering with known files.
    "md5": ("MD5", lambda: hashlib.md5(usedforsecurity=False)),
}


def _parse_key(key: str) -> tuple[str, Callable[[], Any], str]:
    algorithm, colon, relative = key.partition(":")
    if not colon:
        raise InvalidArgumentError(f"failed to parse key: {key}")
    found = _ALGORITHMS.get(algorithm.lower())
    if found is None:
        raise UnsupportedError(f"Unsupported checksum algorithm: {algorithm}")
    return found[0], found[1], relative


def file_digest(path: Path, new_hash: Callable[[], Any], relative: str) -> str:
    """Hex digest of the file at ``path``; ``relative`` names it in errors."""
    digest = new_hash()
    try:
        if path.is_dir():  # open() would fail later and less clearly
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        with path.open("rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as exc:
        reason = exc.strerror or os.strerror(exc.errno or errno.EIO)
        raise InvalidArgumentError(
            f"failed to open text file for read {relative}: {reason}"
        ) from None
    return str(digest.hexdigest())


class ChecksumAgent:
    """Verifies files on LOAD; every other action is a no-op (as upstream)."""

    def model_action(self, model: AgentModel, action: AgentAction) -> None:
        if action is not AgentAction.LOAD:
            return
        for key, expected in model.parameters:
            label, new_hash, relative = _parse_key(key)
            # Joined as text like upstream: a path that leaves the model directory
            # is the config author's choice, not refused.
            actual = file_digest(
                Path(f"{model.location}/{relative}"), new_hash, relative
            )
            if actual != expected:
                raise InvalidArgumentError(
                    f"Mismatched {label} hash for file {relative}, "
                    f"expect: {expected}, got: {actual}"
                )
