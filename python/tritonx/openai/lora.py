"""LoRA adapters (``--lora-separator``), found in the model repository as Triton's
frontend finds them.

A request names ``<model><separator><lora>``. The adapters of a model are listed in
``<repository>/<model>/<version>/multi_lora.json`` (name -> location), version being
the highest numbered directory. vLLM models must also say ``"enable_lora": true`` in
that directory's ``model.json``; their requests carry ``lora_name`` in the sampling
parameters. TensorRT-LLM-format models give each adapter a directory (relative to
the repository, inside it) holding ``model.lora_weights.npy`` and
``model.lora_config.npy``; a request sends ``lora_task_id`` (1, 2, ... in file order)
and, the first time an adapter is used, its weights and config.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonx.openai import tensors
from tritonx.openai.checks import ServerError

LORA_FILES = ("model.lora_weights.npy", "model.lora_config.npy")


@dataclass
class LoraConfig:
    name: str
    task_id: int | None = None  # TensorRT-LLM
    path: Path | None = None  # TensorRT-LLM: the adapter's directory
    registered: bool = False  # TensorRT-LLM: weights already sent once


_register_lock = threading.Lock()


def _latest_version(model_dir: Path) -> int | None:
    versions = [
        int(entry.name)
        for entry in model_dir.iterdir()
        if entry.is_dir() and re.fullmatch(r"[0-9]+", entry.name)
    ]
    return max(versions) if versions else None


def _adapter_dir(repo: Path, location: str, name: str) -> Path:
    """A TensorRT-LLM adapter's directory: relative, inside the repository, with
    both files (messages name the location as written, never the real path)."""
    if os.path.isabs(location):
        raise ValueError(
            f"LoRA path '{location}' for '{name}' must be a relative path inside its "
            "model repository"
        )
    root = repo.resolve()
    target = (root / location).resolve()
    if not target.is_relative_to(root):
        raise ValueError(
            f"LoRA path '{location}' for '{name}' must be inside its model repository"
        )
    if not target.exists():
        raise ServerError(
            f"LoRA directory '{location}' not found for '{name}' in its model repository"
        )
    for file in LORA_FILES:
        if not (target / file).exists():
            raise ServerError(
                f"LoRA file '{file}' not found for '{name}' at path: {location}/{file}"
            )
    return target


def _vllm_enabled(version_dir: Path) -> bool:
    config = json.loads((version_dir / "model.json").read_text())
    return str(config.get("enable_lora", "false")).lower() == "true"


def find_loras(
    repositories: list[str], model_name: str, request_format: str
) -> list[LoraConfig] | None:
    """The adapters of a model over every local repository; None when they cannot
    be known (not a local directory, no version, unreadable model.json or
    multi_lora.json). ServerError for a TensorRT-LLM adapter whose files are
    missing."""
    if not model_name.strip() or "/" in model_name or "\\" in model_name:
        return None
    loras: list[LoraConfig] = []
    task_id = 1
    for repository in repositories:
        repo = Path(repository)
        model_dir = repo / model_name
        if not model_dir.is_dir():
            return None
        version = _latest_version(model_dir)
        if version is None:
            return None
        version_dir = model_dir / str(version)
        listing = version_dir / "multi_lora.json"
        try:
            if request_format == tensors.VLLM:
                if not _vllm_enabled(version_dir):
                    continue
            elif not listing.exists():
                continue
            entries = json.loads(listing.read_text())
            if not isinstance(entries, dict):
                return None
            for name, location in entries.items():
                if request_format == tensors.VLLM:
                    loras.append(LoraConfig(name=str(name)))
                    continue
                path = _adapter_dir(repo, str(location), str(name))
                loras.append(LoraConfig(name=str(name), task_id=task_id, path=path))
                task_id += 1
        except ServerError:
            raise
        except (OSError, ValueError, AttributeError):
            return None
    return loras


def tensorrtllm_lora_inputs(lora: LoraConfig) -> dict[str, Any]:
    """``lora_task_id``, plus the weights and config the first time."""
    inputs: dict[str, Any] = {
        "lora_task_id": np.array([[lora.task_id]], dtype=np.uint64)
    }
    with _register_lock:
        if not lora.registered and lora.path is not None:
            try:
                inputs["lora_weights"] = np.load(lora.path / LORA_FILES[0])
                inputs["lora_config"] = np.load(lora.path / LORA_FILES[1])
            except (OSError, ValueError) as error:
                raise ServerError(
                    f"failed to read LoRA '{lora.name}': {error}"
                ) from None
            lora.registered = True
    return inputs
