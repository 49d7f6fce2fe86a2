"""Custom batching strategy libraries, found where Triton finds them.

A model with dynamic batching may bring a shared library implementing Triton's
``TRITONBACKEND_ModelBatch*`` functions: named by the config parameter
``TRITON_BATCH_STRATEGY_PATH`` (a path inside the model's directory), or else a
``batchstrategy.so`` in the version directory, then the model directory. The core
opens it (``_native.BatchStrategy``) and the dynamic batcher asks it about each
request of a batch being formed (docs/architecture.md, "Custom batching")."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tritonx.config import ModelConfig
from tritonx.errors import InvalidArgumentError, NotFoundError

logger = logging.getLogger("tritonx")

PATH_PARAMETER = "TRITON_BATCH_STRATEGY_PATH"
LIBRARY_NAME = "batchstrategy.so"


def _escapes(child: str, parent: Path) -> bool:
    resolved = os.path.realpath(child)
    root = os.path.realpath(parent)
    return resolved != root and not resolved.startswith(root.rstrip("/") + "/")


def find_batch_strategy(
    config: ModelConfig, model_dir: Path, version: int
) -> Path | None:
    """The strategy library the model asks for or brings, or None. Raises Triton's
    load errors for a library named but unusable here."""
    named = PATH_PARAMETER in config.parameters
    if config.HasField("sequence_batching"):
        if named:
            raise InvalidArgumentError(
                f"{PATH_PARAMETER} cannot be specified with sequence batcher, "
                "using default batching strategy"
            )
        return None
    if named:
        path = config.parameters[PATH_PARAMETER].string_value
        if not path or _escapes(path, model_dir):
            raise InvalidArgumentError(
                "Batching library path escapes model repository."
            )
        if not os.path.exists(path):
            raise NotFoundError(f"Batching library path not found: {path}")
        return Path(path)
    for directory in (model_dir / str(version), model_dir):
        candidate = directory / LIBRARY_NAME
        if candidate.is_file():
            return candidate
    return None


def load_batch_strategy(
    config: ModelConfig, model_dir: Path, version: int, config_json: str
) -> Any | None:
    """The opened strategy (``_native.BatchStrategy``) for a dynamically batched
    model, or None. Its load errors fail the model's load."""
    path = find_batch_strategy(config, model_dir, version)
    if path is None:
        return None
    from tritonx import _native

    logger.info(
        "Loading custom batching strategy library %s for model %s", path, config.name
    )
    strategy = _native.BatchStrategy.load(str(path), config.name, version, config_json)
    return strategy if config.HasField("dynamic_batching") else None
