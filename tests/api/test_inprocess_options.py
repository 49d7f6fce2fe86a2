"""tritonx.api Options that reach the server's machinery: ``cache_config`` (the
local cache and Redis), ``rate_limiter_mode`` / ``rate_limiter_resources`` and
``host_policies``, with the command line's checks and messages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from redisutil import REDIS_SERVER, redis_server
from serverutil import server_env

import tritonx.api as api

PROBE_MODEL = """
import os
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.executions = 0

    def execute(self, requests):
        out = []
        for r in requests:
            self.executions += 1
            cpus = np.array(sorted(os.sched_getaffinity(0)), dtype=np.int64)
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("EXECUTIONS", np.array([self.executions], np.int64)),
                pb_utils.Tensor("CPUS", cpus),
            ]))
        return out
"""
PROBE_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "EXECUTIONS" data_type: TYPE_INT64 dims: [ 1 ] }},
         {{ name: "CPUS" data_type: TYPE_INT64 dims: [ -1 ] }} ]
{extra}
"""


def _repo(root: Path, extra: str) -> Path:
    (root / "probe" / "1").mkdir(parents=True)
    (root / "probe" / "config.pbtxt").write_text(
        textwrap.dedent(PROBE_CONFIG.format(name="probe", extra=extra))
    )
    (root / "probe" / "1" / "model.py").write_text(textwrap.dedent(PROBE_MODEL))
    return root


def _ask(server: api.Server, value: float = 1.0) -> tuple[int, list[int]]:
    inputs = {"INPUT0": np.array([value], dtype=np.float32)}
    (response,) = server.model("probe").infer(inputs=inputs)
    executions = np.from_dlpack(response.outputs["EXECUTIONS"]).tolist()[0]
    return executions, np.from_dlpack(response.outputs["CPUS"]).tolist()


def _cache_counts(server: api.Server) -> tuple[int, int]:
    stats = server.model("probe").statistics()["model_stats"][0]["inference_stats"]
    return stats["cache_hit"]["count"], stats["cache_miss"]["count"]


def test_local_cache(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "response_cache { enable: true }")
    server = api.Server(
        model_repository=str(repo), cache_config={"local": {"size": 1 << 20}}
    ).start(wait_until_ready=True)
    try:
        assert _ask(server)[0] == 1
        assert _ask(server)[0] == 1  # answered from the cache
        assert _ask(server, 2.0)[0] == 2
        assert _cache_counts(server) == (1, 2)
    finally:
        server.stop()


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")
def test_redis_cache(tmp_path: Path) -> None:
    redis = pytest.importorskip("redis")
    repo = _repo(tmp_path, "response_cache { enable: true }")
    with redis_server() as (port, _):
        options = api.Options(
            model_repository=str(repo),
            cache_config={"redis": {"host": "127.0.0.1", "port": port}},
        )
        server = api.Server(options).start(wait_until_ready=True)
        try:
            assert _ask(server)[0] == 1
            store = redis.Redis(port=port)
            for _ in range(500):  # the insert is written behind the response
                if store.keys("tritonx:rc1:*"):
                    break
                store.execute_command("PING")
            assert store.keys("tritonx:rc1:*")
            assert _ask(server)[0] == 1
            assert _cache_counts(server) == (1, 1)
        finally:
            server.stop()


@pytest.mark.parametrize(
    ("cache_config", "message"),
    [
        (
            {"local": {}},
            "Failed to initialize LocalCache: config didn't contain a valid 'size' "
            "field.",
        ),
        (
            {"local": {"size": 10}, "redis": {"host": "x"}},
            "found multiple cache configurations, but only a single cache is "
            "currently supported",
        ),
        ({"redis": {"host": "x"}}, "Failed to initialize RedisCache, didn't specify"),
    ],
)
def test_cache_config_errors(tmp_path: Path, cache_config: dict, message: str) -> None:
    repo = _repo(tmp_path, "")
    with pytest.raises(api.InvalidArgumentError) as info:
        api.Server(model_repository=str(repo), cache_config=cache_config).start()
    assert str(info.value).startswith(message)


def test_rate_limiter_resources(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path,
        "instance_group [ { count: 1 kind: KIND_CPU rate_limiter { resources [ "
        '{ name: "R" count: 2 } ] } } ]',
    )
    # Off: resources are not counted, the model loads.
    server = api.Server(
        model_repository=str(repo),
        rate_limiter_resources=[api.RateLimiterResource("R", 1)],
    ).start(wait_until_ready=True)
    assert _ask(server)[0] == 1
    server.stop()
    # Counted: one R cannot schedule an instance that needs two.
    server = api.Server(
        model_repository=str(repo),
        rate_limiter_mode=api.RateLimitMode.EXEC_COUNT,
        rate_limiter_resources=[api.RateLimiterResource("R", 1)],
        exit_on_error=False,
        strict_readiness=False,
    ).start()
    try:
        assert not server.model("probe").ready()
    finally:
        server.stop()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_host_policies(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "")
    last = max(os.sched_getaffinity(0))
    server = api.Server(
        model_repository=str(repo),
        host_policies={"cpu": {"cpu-cores": f"{last}-{last}"}},
    ).start(wait_until_ready=True)
    try:
        assert _ask(server)[1] == [last]
    finally:
        server.stop()
    with pytest.raises(api.InvalidArgumentError, match="Unsupported host policy"):
        api.Server(
            model_repository=str(repo), host_policies={"cpu": {"x": "1"}}
        ).start()


def test_a_server_never_stopped_is_stopped_at_exit(tmp_path: Path) -> None:
    """The process exits cleanly (no std::terminate under running model threads)
    and the model's finalize runs."""
    repo = tmp_path / "repo"
    (repo / "probe" / "1").mkdir(parents=True)
    (repo / "probe" / "config.pbtxt").write_text(
        textwrap.dedent(PROBE_CONFIG.format(name="probe", extra=""))
    )
    marker = tmp_path / "finalized"
    (repo / "probe" / "1" / "model.py").write_text(
        textwrap.dedent(PROBE_MODEL)
        + f"\n    def finalize(self):\n        open({str(marker)!r}, 'w').close()\n"
    )
    script = (
        "import tritonx.api as api\n"
        f"api.Server(model_repository={str(repo)!r}).start(wait_until_ready=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=server_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "terminate" not in result.stderr
    assert marker.exists()


def _run_script(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter: logging set-up is process-wide."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=server_env(),
    )


@pytest.mark.parametrize(
    ("options", "line_start"),
    [
        ("log_info=True", r"I\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ "),
        (
            "log_verbose=1, log_format=api.LogFormat.ISO8601",
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ I \d+ ",
        ),
    ],
)
def test_triton_log_options(tmp_path: Path, options: str, line_start: str) -> None:
    """tritonserver's Options(log_info=..., log_file=..., log_format=...) as the
    tritonfrontend examples pass them: Triton-format lines in the file."""
    repo = _repo(tmp_path / "repo", "")
    log = tmp_path / "server.log"
    result = _run_script(
        "import tritonx.api as api\n"
        f"server = api.Server(model_repository={str(repo)!r}, "
        f"log_file={str(log)!r}, {options}).start(wait_until_ready=True)\n"
        "server.stop()\n"
    )
    assert result.returncode == 0, result.stderr
    text = log.read_text()
    loaded = [
        line for line in text.splitlines() if "successfully loaded 'probe'" in line
    ]
    assert loaded, text
    assert re.match(line_start, loaded[0]), loaded[0]


def test_no_log_options_leave_logging_alone(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", "")
    result = _run_script(
        "import logging, sys\n"
        "import tritonx.api as api\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='APP %(message)s')\n"
        f"api.Server(model_repository={str(repo)!r}).start(wait_until_ready=True).stop()\n"
    )
    assert result.returncode == 0, result.stderr
    # The application's own configuration formats tritonx's records.
    assert "APP successfully loaded 'probe'" in result.stdout, result.stdout


def test_metrics_options_reach_the_metrics(tmp_path: Path) -> None:
    from serverutil import free_ports

    from tritonx.api.frontend import Metrics

    server = api.Server(
        model_repository=str(_repo(tmp_path / "repo", "")),
        metrics_configuration={"": {"summary_latencies": "true"}},
        cpu_metrics=False,
        metrics_interval=500,
    ).start(wait_until_ready=True)
    try:
        _ask(server)
        assert "nv_inference_request_summary_us_count" in server.metrics()
        (port,) = free_ports(1)
        url = f"http://127.0.0.1:{port}/metrics"
        with (
            Metrics(server, Metrics.Options(port=port)),
            urllib.request.urlopen(url) as reply,
        ):
            text = reply.read().decode()
        assert "nv_inference_request_summary_us_count" in text
        assert "nv_cpu_utilization" not in text
    finally:
        server.stop()
