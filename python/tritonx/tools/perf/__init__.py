"""tritonx-perf: perf_analyzer's measurements with the load generated in C++."""

from tritonx.tools.perf.cli import main

__all__ = ["main"]
