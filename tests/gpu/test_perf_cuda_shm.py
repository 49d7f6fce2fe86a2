"""tritonx-perf --shared-memory cuda on a GPU: inputs and outputs in CUDA regions made
with tritonclient's cuda_shared_memory, registered for the run and gone after it.
(Without a GPU the flag ends with one error line: tests/tools/test_perf_tool.py.)"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from serverutil import server_env
from shmutil import write_repo

try:
    import tritonclient.utils.cuda_shared_memory  # noqa: F401
except (ImportError, RuntimeError):  # it raises RuntimeError without cuda-python
    pytest.skip(
        "tritonclient's CUDA shared memory needs cuda-python (cuda.bindings)",
        allow_module_level=True,
    )


def test_perf_through_cuda_shared_memory(
    tmp_path: Path, serve: Callable[..., Any]
) -> None:
    export = tmp_path / "profile.json"
    (tmp_path / "repo").mkdir()
    with serve(write_repo(tmp_path / "repo")) as s:
        result = subprocess.run(
            [
                sys.executable, "-m", "tritonx.tools.perf", "-m", "echo",
                "-u", s.http_url, "--shape", "INPUT0:64", "--shared-memory", "cuda",
                "--output-shared-memory-size", "256", "--request-count", "20",
                "--profile-export-file", str(export),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            env=server_env(),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        requests = json.loads(export.read_text())["experiments"][0]["requests"]
        assert len(requests) == 20 and all(r["success"] for r in requests)
        conn = http.client.HTTPConnection("127.0.0.1", s.ports["http"], timeout=30)
        conn.request("GET", "/v2/cudasharedmemory/status")
        assert json.loads(conn.getresponse().read()) == []
        conn.close()
