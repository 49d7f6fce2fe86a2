"""Response cache: latency of a hit against a miss, tritonx and Triton in one run.

A Python model that spins ~1 ms per request, with ``response_cache { enable: true
}``, on a server with ``--cache-config local,size=16777216``. One gRPC client sends
requests one at a time: misses use a new input each time, hits repeat one input that
is already cached. Prints median latencies and the hit/miss ratio (target <= 0.30)
for tritonx, for tritonx with the cache in Redis (``--cache-config redis,...``, a
redis-server on loopback, when one is installed), then for the reference Triton
when TRITONX_REFERENCE_CMD is set (its local cache is bundled with the reference
build; it has no Redis cache).

    flock /work/wt/bench.lock python benchmarks/bench_cache.py [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import running

MODEL = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            end = time.perf_counter() + 0.001
            while time.perf_counter() < end:
                pass
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", data)]))
        return out
"""

CONFIG = """
name: "slow"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 16 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 16 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
response_cache { enable: true }
"""

CACHE_ARGS = ["--cache-config=local,size=16777216"]


def _latencies(url: str, requests: int, hit: bool) -> list[float]:
    client = grpcclient.InferenceServerClient(url)
    inp = grpcclient.InferInput("INPUT0", [16], "FP32")
    times = []
    for i in range(requests + 20):  # the first 20 warm up (and fill the hit entry)
        value = 0.5 if hit else float(i + 1)  # a miss: an input never seen
        inp.set_data_from_numpy(np.full(16, value, dtype=np.float32))
        start = time.perf_counter()
        client.infer("slow", [inp])
        if i >= 20:
            times.append((time.perf_counter() - start) * 1e6)
    client.close()
    return times


def _measure(
    name: str, cmd: list[str], repo: Path, requests: int, cache_args: list[str]
) -> tuple[float, float]:
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "python")}
    with running(name, cmd, repo, env, 180.0, cache_args) as (_, grpc):
        url = f"127.0.0.1:{grpc}"
        miss = statistics.median(_latencies(url, requests, hit=False))
        hit = statistics.median(_latencies(url, requests, hit=True))
    return miss, hit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    repo = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    (repo / "slow" / "1").mkdir(parents=True)
    (repo / "slow" / "config.pbtxt").write_text(CONFIG)
    (repo / "slow" / "1" / "model.py").write_text(MODEL)
    tritonx = [sys.executable, "-m", "tritonx"]
    servers = [("tritonx local", tritonx, CACHE_ARGS)]
    redis_server = shutil.which("redis-server")
    redis = None
    if redis_server:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        redis = subprocess.Popen(
            [redis_server, "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        redis_args = [
            "--cache-config=redis,host=127.0.0.1",
            f"--cache-config=redis,port={port}",
        ]
        servers.append(("tritonx redis", tritonx, redis_args))
    reference = os.environ.get("TRITONX_REFERENCE_CMD", "").strip()
    if reference:
        servers.append(("triton local", shlex.split(reference), CACHE_ARGS))
    print("| server, cache | miss p50 (µs) | hit p50 (µs) | hit / miss |")
    print("| --- | ---: | ---: | ---: |")
    try:
        for name, cmd, cache_args in servers:
            miss, hit = _measure(name, cmd, repo, args.requests, cache_args)
            print(f"| {name} | {miss:.0f} | {hit:.0f} | {hit / miss:.2f} |", flush=True)
    finally:
        if redis is not None:
            redis.kill()


if __name__ == "__main__":
    main()
