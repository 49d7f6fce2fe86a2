"""NVIDIA perf_analyzer drives tritonx over HTTP and gRPC without errors.

perf_analyzer reads the model's metadata and config, generates inputs and measures;
it is the strictest everyday client of Triton's protocol. The binary is found via
$PERF_ANALYZER or PATH; the test is skipped where neither has it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import serverutil
from serverutil import SHORT_PERF_RUN, run_server


def _runs(binary: str) -> bool:
    # tritonclient's pip package puts a perf_analyzer launcher on PATH whose binary
    # lacks its shared libraries on many machines; such a one counts as absent.
    probe = subprocess.run(
        [binary, "--help"], capture_output=True, text=True, timeout=300
    )
    return "error while loading shared libraries" not in probe.stderr + probe.stdout


def perf_analyzer() -> str | None:
    candidate = os.environ.get("PERF_ANALYZER")
    if candidate and Path(candidate).is_file():
        return candidate
    found = shutil.which("perf_analyzer")
    return found if found and _runs(found) else None


pytestmark = pytest.mark.skipif(
    perf_analyzer() is None, reason="perf_analyzer not found ($PERF_ANALYZER or PATH)"
)


def run_perf_analyzer(
    url: str, protocol: str, model: str, *extra: str, timeout: float = 120
) -> str:
    """One short perf_analyzer run that must succeed without errors; its output.

    count_windows with a small request count (SHORT_PERF_RUN) keeps the run to a
    few seconds on a busy machine while still exercising metadata, config and infer;
    a run that failed only on perf_analyzer's stability loop is run again.
    """
    binary = perf_analyzer()
    assert binary is not None
    result = serverutil.run_perf_analyzer(
        [binary, "-m", model, "-u", url, "-i", protocol, *extra, *SHORT_PERF_RUN],
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Throughput:" in output, output
    assert "error" not in output.lower().replace("stderr", ""), output
    return output


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_identity(example_repo: Path, protocol: str) -> None:
    with run_server(
        example_repo, "--model-control-mode=explicit", "--load-model=identity"
    ) as server:
        url = server.http_url if protocol == "http" else server.grpc_url
        run_perf_analyzer(url, protocol, "identity", "--shape", "INPUT0:16")
