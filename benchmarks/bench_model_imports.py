"""What an import statement inside a python model's ``execute`` costs in process.

tritonx runs a model's code (in process) with builtins whose ``__import__`` resolves
among the model's own files (backends/_pymodule.py). This times the same functions
defined in a model file loaded by tritonx and in a plain module on ``sys.path`` (how
Triton's stub process imports a model: the interpreter's own import), for an
installed module, a dotted installed module, a sibling module and a sibling
package's submodule. Median of ``--repeats`` runs of ``--number`` calls each.

    PYTHONPATH=python python benchmarks/bench_model_imports.py
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

MODEL = """
def installed():
    import numpy as np
    return np

def installed_dotted():
    import os.path
    return os

def sibling():
    import helper
    return helper

def sibling_package():
    from pkg.sub import VALUE
    return VALUE
"""
CASES = ("installed", "installed_dotted", "sibling", "sibling_package")


def _write(root: Path) -> Path:
    version = root / "bench_model" / "1"
    (version / "pkg").mkdir(parents=True)
    (version / "model.py").write_text(MODEL)
    (version / "helper.py").write_text("VALUE = 1\n")
    (version / "pkg" / "__init__.py").write_text("")
    (version / "pkg" / "sub.py").write_text("VALUE = 2\n")
    return version / "model.py"


def _median_ns(fn: object, number: int, repeats: int) -> float:
    runs = timeit.repeat(fn, number=number, repeat=repeats)  # type: ignore[arg-type]
    return statistics.median(runs) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    from tritonx.backends._pymodule import load_model_module, model_files, running_files

    with tempfile.TemporaryDirectory() as tmp:
        model_file = _write(Path(tmp))
        in_tritonx = load_model_module(model_file)
        # execute runs with its model's context set, as the python backend sets it.
        running_files.set(model_files(model_file, in_tritonx))
        sys.path.insert(0, str(model_file.parent))
        plain = importlib.import_module("model")
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print("| import in execute | plain Python (ns) | tritonx model (ns) | ratio |")
        print("| --- | ---: | ---: | ---: |")
        for case in CASES:
            base = _median_ns(getattr(plain, case), args.number, args.repeats)
            ours = _median_ns(getattr(in_tritonx, case), args.number, args.repeats)
            print(f"| {case} | {base:.0f} | {ours:.0f} | {ours / base:.2f}x |")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
