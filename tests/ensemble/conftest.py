"""Fixtures of the ensemble suites: the test repository's builder (ensemble_repo.py)
is importable from every test module here."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# --import-mode=importlib does not put this directory on sys.path.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
