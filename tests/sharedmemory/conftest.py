"""Fixtures for the shared memory tests (helpers: tests/shmutil.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from shmutil import Region, write_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_repo(tmp_path_factory.mktemp("shm_repo"))


@pytest.fixture
def region() -> Iterator[Region]:
    regions = Region()
    yield regions
    for handle in list(regions.handles):
        regions.destroy(handle)
