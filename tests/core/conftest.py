"""Fixtures for the core tests: models built through tritonx._native, stopped after."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from coreutil import ModelFactory  # noqa: E402

from tritonx import _native  # noqa: E402


@pytest.fixture
def make_model() -> Iterator[ModelFactory]:
    """make_model(spec, config, instances) -> Model, stopped at teardown."""
    models: list[_native.Model] = []
    releases: list[Any] = []

    def make(
        spec: _native.ModelSpec,
        config: _native.SchedulerConfig,
        instances: Sequence[Any],
    ) -> _native.Model:
        model = _native.Model(spec, config, list(instances))
        models.append(model)
        releases.extend(getattr(i, "release", None) for i in instances)
        return model

    yield make
    for release in releases:
        if release is not None:
            release.set()
    for model in models:
        model.stop()
