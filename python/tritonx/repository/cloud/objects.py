"""What a cloud model repository is to the rest of tritonx: a flat set of objects
under a prefix, listed and downloaded by a store (one per storage service)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class CloudStorageError(Exception):
    """A storage service refused or failed a request; the message is for the user
    (it names the service and what it said, never credentials)."""


@dataclass(frozen=True)
class StoredObject:
    """One object of a repository.

    ``key`` is relative to the repository's prefix, '/'-separated; a key that ends
    in '/' is a directory marker (consoles and tools make them for empty folders).
    ``version`` changes whenever the content does (ETag, generation); what a mirror
    compares to decide whether to download again. ``modified_ns`` is the service's
    last-modified time, given to the local copy so that poll mode sees changes."""

    key: str
    size: int
    version: str
    modified_ns: int

    @property
    def is_directory_marker(self) -> bool:
        return self.key.endswith("/")


class ObjectStore(Protocol):
    """One repository location on one storage service. Implementations are
    thread-safe: a mirror lists and downloads from several load threads."""

    #: The location as the user wrote it (also the model namespace).
    location: str

    @property
    def at_bucket_root(self) -> bool:
        """The location is a whole bucket: a directory even when it is empty, as
        Triton counts a bucket's root."""
        ...

    def check(self) -> None:
        """Raise CloudStorageError when the service or the bucket cannot be reached
        with the credentials at hand (Triton's "unable to create ... client")."""

    def list_objects(self) -> list[StoredObject]:
        """Every object below the location, recursively; CloudStorageError on
        failure."""
        ...

    def download(self, key: str, target: Path) -> None:
        """Write the object ``key`` (relative, as listed) to ``target``."""
