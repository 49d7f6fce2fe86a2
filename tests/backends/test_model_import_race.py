"""Loading a model.py (which puts its directory on sys.path for the duration) must
not hide site-packages from imports running at the same time on other threads:
models load in parallel, and a python model loading beside an ONNX one once made
``import onnxruntime`` fail with "No module named 'onnxruntime'"."""

from __future__ import annotations

import threading
from importlib.machinery import PathFinder
from pathlib import Path

from tritonx.backends._pymodule import load_model_module


def test_path_lookups_survive_concurrent_model_loads(tmp_path: Path) -> None:
    model_file = tmp_path / "1" / "model.py"
    model_file.parent.mkdir()
    model_file.write_text("VALUE = 1\n")
    stop = threading.Event()
    misses: list[int] = []

    def look_up() -> None:
        # PathFinder walks sys.path entry by entry, as `import numpy` does on a
        # first import (importlib.util.find_spec would answer from sys.modules).
        lookups = 0
        while not stop.is_set():
            lookups += 1
            if PathFinder.find_spec("numpy") is None:
                misses.append(lookups)

    finder = threading.Thread(target=look_up)
    finder.start()
    try:
        for _ in range(3000):
            assert load_model_module(model_file).VALUE == 1
    finally:
        stop.set()
        finder.join()
    assert misses == []
