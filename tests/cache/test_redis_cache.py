"""The response cache in Redis (``--cache-config redis,host=...,port=...``) end to end
against a real redis-server on loopback: two servers share one cache (a response
computed by one is a hit on the other, its outputs intact, requested outputs
filtered, statistics counted like local hits); a stopped Redis delays only the
cached model's requests, a dead one turns lookups into misses while the models
answer, and caching resumes when it is back; password from Triton's environment
variable; ``ttl``; Triton's start-up errors.

The model answers its server's process id and an execution counter, so a hit is
told from a miss by content, never by timing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from redisutil import REDIS_SERVER, redis_server, wait_for_key_count
from serverutil import RunningServer, free_port, run_server

redis = pytest.importorskip("redis")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server not installed"
)

MODEL = """
import os
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.executions = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.executions += 1
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            words = np.array([b"pid", str(os.getpid()).encode()], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", data * 2),
                pb_utils.Tensor("EXECUTIONS", np.array([self.executions], np.int64)),
                pb_utils.Tensor("WORDS", words),
            ]))
        return responses
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
output [
  {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] }},
  {{ name: "EXECUTIONS", data_type: TYPE_INT64, dims: [ 1 ] }},
  {{ name: "WORDS", data_type: TYPE_STRING, dims: [ 2 ] }}
]
{extra}
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("redis_cache")
    for name, extra in (("cached", "response_cache { enable: true }"), ("plain", "")):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(CONFIG.format(name=name, extra=extra))
        (root / name / "1" / "model.py").write_text(MODEL)
    return root


def _cache_flags(port: int, *extra: str) -> list[str]:
    return [
        "--cache-config=redis,host=127.0.0.1",
        f"--cache-config=redis,port={port}",
        *(f"--cache-config=redis,{setting}" for setting in extra),
    ]


def _infer(
    server: RunningServer,
    model: str,
    values: list[float],
    protocol: str = "http",
    outputs: list[str] | None = None,
) -> dict[str, Any]:
    module: Any = grpcclient if protocol == "grpc" else httpclient
    url = server.grpc_url if protocol == "grpc" else server.http_url
    client = module.InferenceServerClient(url)
    try:
        data = np.array(values, dtype=np.float32)
        inp = module.InferInput("INPUT0", list(data.shape), "FP32")
        inp.set_data_from_numpy(data)
        requested = (
            [module.InferRequestedOutput(n) for n in outputs] if outputs else None
        )
        result = client.infer(model, [inp], outputs=requested)
        response = (
            result.get_response(as_json=True)
            if protocol == "grpc"
            else (result.get_response())
        )
        names = [o["name"] for o in response["outputs"]]
        return {name: result.as_numpy(name) for name in names}
    finally:
        client.close()


def _pid(answer: dict[str, Any]) -> int:
    return int(answer["WORDS"][1])


def _cache_counts(server: RunningServer, model: str) -> tuple[int, int]:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    inference = stats["inference_stats"]
    return inference["cache_hit"]["count"], inference["cache_miss"]["count"]


def test_replicas_share_one_cache(repo: Path) -> None:
    with redis_server() as (port, _):
        store = redis.Redis(port=port)
        flags = _cache_flags(port)
        with run_server(repo, *flags) as first, run_server(repo, *flags) as second:
            miss = _infer(first, "cached", [1.0, 2.0])
            assert miss["EXECUTIONS"].tolist() == [1]
            assert miss["OUTPUT0"].tolist() == [2.0, 4.0]
            first_pid = _pid(miss)
            wait_for_key_count(store, 1)

            # The other replica answers from Redis: the first one's process id and
            # execution count, every output intact, over both protocols.
            for protocol in ("http", "grpc"):
                hit = _infer(second, "cached", [1.0, 2.0], protocol)
                assert _pid(hit) == first_pid
                assert hit["EXECUTIONS"].tolist() == [1]
                assert hit["OUTPUT0"].tolist() == [2.0, 4.0]
                assert hit["WORDS"].tolist() == [b"pid", str(first_pid).encode()]
            only = _infer(second, "cached", [1.0, 2.0], outputs=["OUTPUT0"])
            assert list(only) == ["OUTPUT0"]

            # Other inputs miss and execute on the server asked.
            other = _infer(second, "cached", [3.0])
            assert _pid(other) != first_pid and other["OUTPUT0"].tolist() == [6.0]
            # A model without response_cache never touches Redis.
            assert _infer(second, "plain", [1.0, 2.0])["EXECUTIONS"].tolist() == [1]
            wait_for_key_count(store, 2)
            assert len(store.keys("tritonx:rc1:*")) == 2

            assert _cache_counts(first, "cached") == (0, 1)
            assert _cache_counts(second, "cached") == (3, 1)


def test_a_stopped_redis_delays_only_cached_requests(repo: Path) -> None:
    """Lookups wait in the cache's own threads: while Redis is frozen, the cached
    model's request waits, and the server keeps answering everything else."""
    with (
        redis_server() as (port, process),
        run_server(repo, *_cache_flags(port)) as server,
    ):
        _infer(server, "cached", [5.0])
        # The entry reaches Redis behind the response: stopping Redis before it is
        # there would make the request below a miss (CI saw 2 executions).
        wait_for_key_count(redis.Redis(port=port), 1)
        process.send_signal(signal.SIGSTOP)
        answers: list[dict[str, Any]] = []
        waiting = threading.Thread(
            target=lambda: answers.append(_infer(server, "cached", [5.0]))
        )
        try:
            waiting.start()
            # Served meanwhile, on the same HTTP server and over gRPC.
            client = httpclient.InferenceServerClient(server.http_url)
            assert client.is_server_ready()
            client.close()
            assert _infer(server, "plain", [1.0])["EXECUTIONS"].tolist() == [1]
            assert _infer(server, "plain", [1.0], "grpc")["OUTPUT0"].tolist() == [2.0]
            assert waiting.is_alive()  # still waiting for the frozen Redis
        finally:
            process.send_signal(signal.SIGCONT)
        # Once Redis answers, the waiting request is a hit.
        waiting.join(timeout=60)
        assert answers and answers[0]["EXECUTIONS"].tolist() == [1]


def test_redis_going_away_turns_lookups_into_misses(repo: Path) -> None:
    port = free_port()
    flags = _cache_flags(port, "connect_timeout=2000", "socket_timeout=2000")
    with redis_server(port=port) as (_, process):
        server_cm = run_server(repo, *flags)
        server = server_cm.__enter__()
        try:
            assert _infer(server, "cached", [7.0])["EXECUTIONS"].tolist() == [1]
            wait_for_key_count(redis.Redis(port=port), 1)
            assert _infer(server, "cached", [7.0])["EXECUTIONS"].tolist() == [1]  # hit
            process.kill()
            process.wait()
            # No Redis: every request executes, nothing fails.
            assert _infer(server, "cached", [7.0])["EXECUTIONS"].tolist() == [2]
            assert _infer(server, "cached", [7.0], "grpc")["EXECUTIONS"].tolist() == [3]
            assert server.process.poll() is None
            # Redis is back (empty): the next miss is cached again and then hits.
            with redis_server(port=port):
                assert _infer(server, "cached", [7.0])["EXECUTIONS"].tolist() == [4]
                wait_for_key_count(redis.Redis(port=port), 1)
                assert _infer(server, "cached", [7.0])["EXECUTIONS"].tolist() == [4]
            assert server.wait_for_log("response cache: Redis lookup failed")
        finally:
            server_cm.__exit__(None, None, None)


def test_password_from_the_environment_and_ttl(repo: Path) -> None:
    with redis_server("--requirepass", "s3cret") as (port, _):
        store = redis.Redis(port=port, password="s3cret")
        env = {"TRITONCACHE_REDIS_PASSWORD": "s3cret"}
        with run_server(repo, *_cache_flags(port, "ttl=600"), env=env) as server:
            _infer(server, "cached", [1.5])
            wait_for_key_count(store, 1)
            (key,) = store.keys("tritonx:rc1:*")
            assert 0 < store.ttl(key) <= 600
        # Without the password the server does not start, with Redis's reason.
        with run_server(repo, *_cache_flags(port), expect_ready=False) as refused:
            refused.process.wait(timeout=60)
        assert refused.process.returncode == 1
        assert (
            "error: creating server: Internal - Failed to initialize RedisCache: "
            in refused.log_text()
        )
        assert "authenticate" in refused.log_text()  # Redis says why


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--cache-config=redis,host=127.0.0.1"],
            "error: creating server: Invalid argument - Failed to initialize "
            "RedisCache, didn't specify address. Must at a minimum specify 'host' and "
            "'port' in the configuration",
        ),
        (
            ["--cache-config=redis,host=127.0.0.1", "--cache-config=local,size=100"],
            "error: creating server: Invalid argument - found multiple cache "
            "configurations, but only a single cache is currently supported",
        ),
        (
            ["--cache-config=memcached,host=x"],
            "error: creating server: Invalid argument - unable to find "
            "'libtritoncache_memcached.so' for cache. Searched: /opt/tritonserver/caches",
        ),
        (
            ["--cache-config=redis,host=127.0.0.1", "--cache-config=redis,port=x"],
            "error: creating server: Invalid argument - Failed to initialize "
            "RedisCache: invalid value 'x' for 'port'",
        ),
    ],
)
def test_start_up_errors(repo: Path, flags: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tritonx", f"--model-repository={repo}", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    assert result.returncode == 1
    assert message in result.stderr + result.stdout


def test_unreachable_redis_fails_start_up(repo: Path) -> None:
    port = free_port()  # nothing listens there
    with run_server(repo, *_cache_flags(port), expect_ready=False) as server:
        server.process.wait(timeout=60)
    assert server.process.returncode == 1
    assert (
        "error: creating server: Internal - Failed to initialize RedisCache: "
        in server.log_text()
    )
