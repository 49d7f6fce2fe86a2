"""tritonx: a Triton-compatible inference server with a C++ scheduling core."""

from __future__ import annotations

__version__ = "0.1.0"
