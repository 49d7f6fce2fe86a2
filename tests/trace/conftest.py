"""Fixtures of the trace suites: traceutil and the ensemble suite's repository
builder are importable from every test module here."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# --import-mode=importlib does not put test directories on sys.path.
for path in (HERE, HERE.parent / "ensemble"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
