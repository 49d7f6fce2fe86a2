"""In-place instance updates under load: tritonx against a reference Triton.

One python model starts with ``--instances`` instances whose ``initialize`` sleeps
``--init-seconds`` (a stand-in for loading weights); ``--rounds`` times the
benchmark raises its count by one and lowers it again (a reload whose config
changes only ``instance_group``: both servers update the model in place) while
``--clients`` threads send requests back to back over HTTP. Per server it prints
the median seconds a load call took to add and to remove an instance, the
requests per second served and failed meanwhile, and the median / p99 / max
request latency during the updates. Servers run one after the other, never together.

    PYTHONPATH=python python benchmarks/bench_instance_update.py \\
        --reference-cmd ../shared/tools/triton_reference
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _harness import (
    SLOW_INIT_MODEL,
    add_server_arguments,
    running,
    servers_to_compare,
    slow_init_config,
)

BODY = json.dumps(
    {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": [1] * 4}]}
)


class Load:
    """Closed-loop clients recording each request's latency and failures."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, daemon=True) for _ in range(clients)
        ]

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        while not self._stop.is_set():
            start = time.perf_counter()
            try:
                conn.request("POST", "/v2/models/m/infer", BODY)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            took = time.perf_counter() - start
            with self._lock:
                self.latencies.append(took)
                self.failures += 0 if ok else 1
        conn.close()

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def load_model(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    start = time.perf_counter()
    conn.request("POST", "/v2/repository/models/m/load", b"")
    response = conn.getresponse()
    response.read()
    took = time.perf_counter() - start
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"load failed: HTTP {response.status}")
    return took


def measure(
    name: str, cmd: list[str], repo: Path, args: argparse.Namespace
) -> dict[str, object]:
    config = repo / "m" / "config.pbtxt"
    config.write_text(slow_init_config("m", args.instances))
    adds: list[float] = []
    removes: list[float] = []
    extra = ["--model-control-mode=explicit", "--load-model=m"]
    server = running(name, cmd, repo, {}, timeout=300, extra_args=extra)
    with server as (http_port, _), Load(http_port, args.clients) as load:
        started = time.perf_counter()
        for _ in range(args.rounds):
            config.write_text(slow_init_config("m", args.instances + 1))
            adds.append(load_model(http_port))
            config.write_text(slow_init_config("m", args.instances))
            removes.append(load_model(http_port))
        seconds = time.perf_counter() - started
    latencies = sorted(load.latencies)
    return {
        "add": statistics.median(adds),
        "remove": statistics.median(removes),
        "rate": len(latencies) / seconds,
        "failed": load.failures,
        "p50": statistics.median(latencies) * 1e3,
        "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1e3,
        "max": latencies[-1] * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--init-seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-instance-update-") as tmp:
        repo = Path(tmp) / "repo"
        (repo / "m" / "1").mkdir(parents=True)
        (repo / "m" / "1" / "model.py").write_text(
            SLOW_INIT_MODEL.format(seconds=args.init_seconds)
        )
        for name, cmd in servers_to_compare(args):
            results[name] = measure(name, cmd, repo, args)
    load_after = os.getloadavg()
    print(
        f"# {args.instances} -> {args.instances + 1} -> {args.instances} instances, "
        f"{args.rounds} rounds, initialize {args.init_seconds:g} s, "
        f"{args.clients} HTTP clients; load average {load_before[0]:.2f} -> "
        f"{load_after[0]:.2f}"
    )
    print(
        f"{'server':<10} {'add s':>7} {'remove s':>9} {'req/s':>8} {'failed':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:<10} {r['add']:>7.2f} {r['remove']:>9.2f} {r['rate']:>8.0f} "
            f"{r['failed']:>7} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['max']:>9.1f}"
        )
    base = results.get("reference")
    if base:
        mine = results["tritonx"]
        print(
            "tritonx / reference: add x{:.2f}, remove x{:.2f}, p99 x{:.2f}, "
            "max x{:.2f}".format(
                mine["add"] / base["add"],  # type: ignore[operator]
                mine["remove"] / base["remove"],  # type: ignore[operator]
                mine["p99"] / base["p99"],  # type: ignore[operator]
                mine["max"] / base["max"],  # type: ignore[operator]
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
