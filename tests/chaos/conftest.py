"""Fixtures of the chaos suites."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# --import-mode=importlib does not put this directory on sys.path.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
