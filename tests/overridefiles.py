"""Model files a load request carries as ``file:`` overrides, and the keys it puts
them under (good and odd paths): shared by the repository fuzz
(tests/fuzz/test_repository_fuzz.py) and the load-override differential fuzz
(tests/config/test_load_override_fuzz.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

EXAMPLE_REPO = Path(__file__).resolve().parents[1] / "model_repository"

MODEL_FILES = {
    "identity": (EXAMPLE_REPO / "identity" / "1" / "model.py").read_text(),
    "syntax error": "def initialize(:\n",
    "raises": textwrap.dedent(
        """\
        class TritonPythonModel:
            def initialize(self, args):
                raise RuntimeError("refusing to load")
        """
    ),
    "empty": "",
}
FILE_KEYS = [
    "file:1/model.py", "file:1/extra/data.bin", "file:../escape.py", "file:1/../../x",
    "file:/etc/passwd", "file:", "file:1/", "file:2/model.py",
]  # fmt: skip
