"""Model timestamps: what a reload of a loaded model compares to tell which
versions changed (Triton's ModelTimestamp).

A model's timestamp is, per entry of its directory, the newest modification time
beneath it. Every load from the repository takes one before it builds anything
(poll mode also compares them to find the models to load again). A version is
unchanged when its own directory and the files its versions share (anything but
the config, the version directories and the model directory itself) have the same
times as at the load that is serving it; reuse.py decides
whether such a version keeps serving."""

from __future__ import annotations

import os
from pathlib import Path

# Entry name -> latest mtime (ns) beneath it; "" is the model directory itself.
Timestamp = dict[str, int]


def _latest_mtime(path: str) -> int:
    """The newest mtime of ``path`` and everything beneath it (0 on errors, so a
    transient error never looks like a change that keeps recurring)."""
    try:
        latest = os.stat(path).st_mtime_ns
    except OSError:
        return 0
    if os.path.isdir(path):
        try:
            children = os.listdir(path)
        except OSError:
            return 0
        for child in children:
            latest = max(latest, _latest_mtime(os.path.join(path, child)))
    return latest


def model_timestamp(model_dir: Path) -> Timestamp:
    try:
        stamp = {"": os.stat(model_dir).st_mtime_ns}
        entries = os.listdir(model_dir)
    except OSError:
        return {}
    for entry in entries:
        stamp[entry] = _latest_mtime(os.path.join(model_dir, entry))
    return stamp


def config_entry(config_name: str | None, model_dir: Path) -> str:
    """The directory entry holding the config a load reads."""
    if config_name and (model_dir / "configs" / f"{config_name}.pbtxt").exists():
        return "configs"
    return "config.pbtxt"


def unchanged_versions(
    old: Timestamp, new: Timestamp, config_entry: str
) -> frozenset[int]:
    """Versions whose directory and whose shared files (anything but the config,
    the version directories and the model directory itself) did not change."""

    def shared(stamp: Timestamp) -> dict[str, int]:
        return {
            k: v
            for k, v in stamp.items()
            if k and not k.isdigit() and k != config_entry
        }

    if shared(old) != shared(new):
        return frozenset()
    return frozenset(int(k) for k, v in new.items() if k.isdigit() and old.get(k) == v)
