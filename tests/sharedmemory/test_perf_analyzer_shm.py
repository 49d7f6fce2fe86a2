"""perf_analyzer --shared-memory=system drives tritonx over HTTP and gRPC: it
registers its regions, sends every input through them and receives every output
in them, then unregisters. The binary comes from $PERF_ANALYZER or PATH."""

from __future__ import annotations

from pathlib import Path

import pytest
import tritonclient.http as httpclient
from serverutil import run_server
from test_perf_analyzer import perf_analyzer, run_perf_analyzer

pytestmark = pytest.mark.skipif(
    perf_analyzer() is None, reason="perf_analyzer not found ($PERF_ANALYZER or PATH)"
)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_system_shared_memory(repo: Path, protocol: str) -> None:
    with run_server(
        repo, "--model-control-mode=explicit", "--load-model=echo"
    ) as server:
        url = server.http_url if protocol == "http" else server.grpc_url
        run_perf_analyzer(
            url,
            protocol,
            "echo",
            "--shape",
            "INPUT0:16",
            "--shared-memory",
            "system",
            "--output-shared-memory-size",
            "64",
        )
        # perf_analyzer unregisters what it registered.
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.get_system_shared_memory_status() == []
        client.close()
