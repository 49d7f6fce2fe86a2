"""Head-of-line stalls: how long does `GET /v2/health/live` on other connections
wait while one connection sends a huge request?

Hostile requests (each repeated `--repeat` times, one at a time):
  json30   POST .../infer with a ~30 MB JSON tensor (3M FP32 values, identity model)
  gen30    POST .../generate with the same values as a generate body
  header1  a request head with a 1 MB header line, sent in 64 KiB pieces
  pipe240  240 small infer requests pipelined in one write, 20 times over
While one is in flight, health checks go round-robin over `--probes` keep-alive
connections (several, so that some share the hostile connection's server thread);
the table shows their latency before (baseline) and during each kind, and the added
delay (max during minus baseline median). Target: < 5 ms added.

    flock /work/wt/bench.lock python benchmarks/bench_stall.py \\
        --reference-cmd /work/shared/tools/triton_reference
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shlex
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _harness import add_server_arguments, running

CONFIG = """
name: "identity_any"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""
MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
"""


def make_repo(root: Path) -> Path:
    (root / "identity_any" / "1").mkdir(parents=True)
    (root / "identity_any" / "config.pbtxt").write_text(CONFIG)
    (root / "identity_any" / "1" / "model.py").write_text(MODEL)
    return root


def json30_body() -> bytes:
    count = 3_000_000
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [count],
                    "data": [1.2345678] * count,
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()


def gen30_body() -> bytes:
    return json.dumps({"INPUT0": [1.2345678] * 3_000_000}).encode()


# Built once, before any probe. The hostile request runs in a forked child process:
# in a thread of this one, its encoding and its reply's reads would hold this
# process's GIL and show up as probe latency that the server never caused.
JSON30: list[bytes] = []
GEN30: list[bytes] = []


def post_big(port: int, route: str, body: bytes) -> None:
    os.setpriority(os.PRIO_PROCESS, 0, 0)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", f"/v2/models/identity_any/{route}", body)
        reply = conn.getresponse()
        reply.read()
        assert reply.status == 200, reply.status
    finally:
        conn.close()


def json30(port: int) -> None:
    post_big(port, "infer", JSON30[0])


def gen30(port: int) -> None:
    post_big(port, "generate", GEN30[0])


def header1(port: int) -> None:
    os.setpriority(os.PRIO_PROCESS, 0, 0)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(16):
                sock.sendall(b"a" * 65536)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # refused and closed part-way: expected
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


PIPELINED = 240
PIPE_ROUNDS = 20


def small_infer() -> bytes:
    body = json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": [1] * 4}
            ]
        }
    ).encode()
    head = (
        "POST /v2/models/identity_any/infer HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def pipe240(port: int) -> None:
    os.setpriority(os.PRIO_PROCESS, 0, 0)
    wire = small_infer() * PIPELINED
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        for _ in range(PIPE_ROUNDS):
            sock.sendall(wire)
            received = b""
            answered = 0
            while answered < PIPELINED:
                chunk = sock.recv(1 << 16)
                assert chunk, "closed by the server"
                received += chunk
                while (end := received.find(b"\r\n\r\n")) >= 0:
                    head = received[:end].lower()
                    length = int(head.split(b"content-length: ", 1)[1].split(b"\r")[0])
                    if len(received) < end + 4 + length:
                        break
                    assert head.startswith(b"http/1.1 200"), head[:40]
                    received = received[end + 4 + length :]
                    answered += 1


HOSTILE: dict[str, Callable[[int], None]] = {
    "json30": json30,
    "gen30": gen30,
    "header1": header1,
    "pipe240": pipe240,
}


def probe_once(conns: list[http.client.HTTPConnection], i: int) -> float:
    conn = conns[i % len(conns)]
    start = time.perf_counter()
    conn.request("GET", "/v2/health/live")
    reply = conn.getresponse()
    reply.read()
    took = time.perf_counter() - start
    assert reply.status == 200
    return took


def during(
    port: int, probes: int, hostile: Callable[[int], None], repeat: int, probe_nice: int
) -> tuple[list[float], list[float]]:
    """(baseline latencies, latencies while `hostile` ran), in seconds."""
    conns = [
        http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(probes)
    ]
    try:
        base = [probe_once(conns, i) for i in range(20 * probes)]
        seen: list[float] = []
        fork = multiprocessing.get_context("fork")
        os.setpriority(os.PRIO_PROCESS, 0, probe_nice)  # this thread only (Linux)
        for _ in range(repeat):
            child = fork.Process(target=hostile, args=(port,), daemon=True)
            # The child starts at the probe's own niceness (fork); it resets itself.
            child.start()
            i = 0
            while child.is_alive():
                took = probe_once(conns, i)
                if child.is_alive():
                    seen.append(took)
                i += 1
                time.sleep(0.002)
            child.join()
            if child.exitcode != 0:
                raise RuntimeError(f"{hostile.__name__} failed: exit {child.exitcode}")
        return base, seen
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
        for conn in conns:
            conn.close()


def bench(
    name: str, cmd: Sequence[str], repo: Path, args: argparse.Namespace
) -> list[tuple[str, str, list[float], list[float]]]:
    rows = []
    with running(name, cmd, repo, {}, 120.0, args.extra) as (http_port, _):
        for kind in args.hostile:
            hostile = HOSTILE[kind]
            base, seen = during(
                http_port, args.probes, hostile, args.repeat, args.probe_nice
            )
            rows.append((name, kind, base, seen))
            print(f"  {name} {kind}: {len(seen)} probes during", flush=True)
    return rows


def ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    values = sorted(values)
    return f"{values[min(len(values) - 1, int(q * len(values)))] * 1e3:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(p)
    p.add_argument("--probes", type=int, default=4, help="health connections")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--hostile",
        nargs="+",
        choices=sorted(HOSTILE),
        default=list(HOSTILE),
        help="which hostile requests to run (default: all)",
    )
    p.add_argument(
        "--probe-nice",
        type=int,
        default=0,
        help="niceness of the probing thread while the hostile request runs (e.g. -10,"
        " needs root): on a 2-core machine the hostile sender competes with the probe"
        " client for a core, and that wait is the client's, not the server's",
    )
    p.add_argument(
        "--tritonx-args",
        default="",
        help="extra tritonx flags, e.g. --http-engine=python",
    )
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    rows = []
    if "json30" in args.hostile:
        JSON30.append(json30_body())
    if "gen30" in args.hostile:
        GEN30.append(gen30_body())
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        args.extra = shlex.split(args.tritonx_args)
        rows += bench("tritonx", shlex.split(args.tritonx_cmd), repo, args)
        if args.reference_cmd:
            args.extra = []
            rows += bench("reference", shlex.split(args.reference_cmd), repo, args)
    print()
    print(f"health/live latency (ms) on {args.probes} other connections")
    header = (
        f"{'server':10s} {'hostile':8s} | {'base p50':>8s} {'base max':>8s} | "
        f"{'n':>4s} {'p50':>7s} {'p99':>7s} {'max':>7s} | {'added':>7s}"
    )
    print(header)
    print("-" * len(header))
    for name, kind, base, seen in rows:
        added = (
            f"{(max(seen) - statistics.median(base)) * 1e3:7.2f}" if seen else "      -"
        )
        print(
            f"{name:10s} {kind:8s} | {ms(base, 0.5):>8s} {ms(base, 1.0):>8s} | "
            f"{len(seen):4d} {ms(seen, 0.5):>7s} {ms(seen, 0.99):>7s} "
            f"{ms(seen, 1.0):>7s} | {added}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
