"""Helpers for the config tests: real model directories under tmp_path."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# --import-mode=importlib does not put this directory on sys.path (the differential
# test's case tables live here).
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

MODEL_PY = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([]) for _ in requests]
"""

MakeModel = Callable[..., Path]


@pytest.fixture
def make_model(tmp_path: Path) -> MakeModel:
    """make_model(name, config_text or None, files={"1/model.py": ...})."""

    def make(
        name: str,
        config: str | None = None,
        files: dict[str, str | bytes] | None = None,
    ) -> Path:
        model_dir = tmp_path / name
        model_dir.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (model_dir / "config.pbtxt").write_text(config)
        for rel, content in (
            files if files is not None else {"1/model.py": MODEL_PY}
        ).items():
            path = model_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        return model_dir

    return make
