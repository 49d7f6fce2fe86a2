"""Fixtures of the output tests (order, classification)."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# --import-mode=importlib does not put tests/ on sys.path; serverutil lives there.
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
