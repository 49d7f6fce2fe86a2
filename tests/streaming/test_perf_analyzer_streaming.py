"""perf_analyzer --streaming drives a decoupled model over gRPC ModelStreamInfer.

perf_analyzer detects the decoupled model from its config, opens one stream per
concurrency slot and finishes a request when the response carrying
`triton_final_response` arrives; it fails if a stream breaks or a request never ends.
Runs against the reference Triton too when $TRITONX_REFERENCE_CMD is set; skipped
without perf_analyzer ($PERF_ANALYZER or PATH), like tests/test_perf_analyzer.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import serverutil
from serverutil import SHORT_PERF_RUN, RunningServer
from test_perf_analyzer import perf_analyzer

pytestmark = pytest.mark.skipif(
    perf_analyzer() is None, reason="perf_analyzer not found ($PERF_ANALYZER or PATH)"
)

COUNT = 4


def _value(pattern: str, output: str) -> float:
    match = re.search(pattern, output)
    assert match, f"{pattern!r} not in perf_analyzer's output:\n{output}"
    return float(match.group(1))


# MODE 0: responses sent from execute; MODE 1: from a thread after execute returned.
@pytest.mark.parametrize("mode", [0, 1])
def test_perf_analyzer_streaming(
    streaming_server: tuple[RunningServer, Path],
    tmp_path: Path,
    mode: int,
) -> None:
    binary = perf_analyzer()
    assert binary is not None
    server, _ = streaming_server
    data = tmp_path / "input.json"
    data.write_text(json.dumps({"data": [{"COUNT": [COUNT], "MODE": [mode]}]}))
    # Each stream's requests are independent (no sequence): a run that failed only
    # on perf_analyzer's stability loop may run again.
    result = serverutil.run_perf_analyzer(
        [
            binary,
            "-m",
            "repeat",
            "-u",
            server.grpc_url,
            "-i",
            "grpc",
            "--streaming",
            "--input-data",
            str(data),
            *SHORT_PERF_RUN,
        ],
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Detected decoupled model" in output, output
    assert "error" not in output.lower().replace("stderr", ""), output
    requests = _value(r"Request count: (\d+)", output)
    assert requests > 0, output
    # Response throughput counts every response: COUNT per request (the empty FINAL
    # perf_analyzer asks for carries no data). Both rates come from the same window,
    # so their ratio is a count, not a timing.
    rate = _value(r"Throughput: ([\d.]+) infer/sec", output)
    response_rate = _value(r"Response Throughput: ([\d.]+) infer/sec", output)
    assert response_rate / rate == pytest.approx(COUNT, rel=0.1), output
    # perf_analyzer's server side comes from the statistics API during the windows.
    assert _value(r"Successful request count: (\d+)", output) > 0, output
