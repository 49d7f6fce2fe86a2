"""Running tritonx-analyze in tests: the perf commands it drives, and a runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serverutil import server_env

# Measurement flags for the perf command in tests: short time windows and a loose
# stability band keep each point under a second on a busy machine
# (perf_analyzer's count windows cost it about 3 s a run whatever the count).
# Both tritonx-perf and perf_analyzer take them (and both stretch a time window to
# 1.2 x the interval: 170 ms windows last about 200 ms).
TEST_PERF_ARGS = (
    "--measurement-mode time_windows --measurement-interval 170 "
    "--max-trials 4 --stability-percentage 100"
)


def perf_command() -> str:
    """The bundled tritonx-perf, as tritonx-analyze runs it by default."""
    return f"{sys.executable} -m tritonx.tools.perf"


def perf_analyzer_command() -> str | None:
    """NVIDIA's perf_analyzer ($PERF_ANALYZER or PATH), when there is one."""
    from test_perf_analyzer import perf_analyzer

    return perf_analyzer()


def analyze_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "tritonx.tools.analyze", *map(str, args)]


def run_analyze(
    *args: str | Path, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        analyze_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=server_env(),
        cwd=os.getcwd(),
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a bad input ends with (and nothing that looks like a
    traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert lines, result.stderr
    assert lines[-1].startswith("tritonx-analyze: error: "), result.stderr
    return lines[-1]
