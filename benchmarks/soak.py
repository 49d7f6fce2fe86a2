"""Soak test: hours-long load in miniature, watching the server's resources.

Runs ``python -m tritonx`` on a model repository (default: model_repository/) and
drives the ``identity`` model over HTTP and gRPC alternately, one protocol per
segment, with perf_analyzer (``$PERF_ANALYZER`` or ``--perf-analyzer``) or, when
there is none, a Python load loop. The server's RSS, thread count and open file
descriptors (psutil) are sampled at the start, at the end of the warm-up, every
``--sample-seconds`` and at the end; a table and the growth are printed. The exit
status is non-zero when RSS grew by more than ``--max-rss-growth-mib`` after the
warm-up, when any request failed, or when the server died or did not exit 0.

    PYTHONPATH=python python benchmarks/soak.py                  # 10 minutes
    PYTHONPATH=python python benchmarks/soak.py --minutes 0.5    # smoke run
    PERF_ANALYZER=/work/shared/tools/perf_analyzer PYTHONPATH=python \\
        python benchmarks/soak.py --minutes 60 --concurrency 8
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
MODEL = "identity"
WIDTH = 16  # FP32 elements per request (batch 1)
_PORTS = {
    "http": re.compile(r"Started HTTPService at [^:]+:(\d+)"),
    "grpc": re.compile(r"Started GRPCInferenceService at [^:]+:(\d+)"),
}


@dataclass
class Sample:
    seconds: float
    label: str
    rss_mib: float
    threads: int
    fds: int
    requests: int


class Server:
    """tritonx in a subprocess, its log kept in memory, ports read from the log."""

    def __init__(self, repo: Path, extra: Sequence[str]) -> None:
        cmd = [
            sys.executable, "-m", "tritonx", f"--model-repository={repo}",
            "--http-port=0", "--grpc-port=0", "--metrics-port=0",
            "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", *extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.log: list[str] = []
        self.ports: dict[str, int] = {}
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + 120
        while self.ports.keys() != _PORTS.keys():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + "".join(self.log))
            time.sleep(0.05)
        self.ps = psutil.Process(self.process.pid)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            for name, pattern in _PORTS.items():
                match = pattern.search(line)
                if match:
                    self.ports[name] = int(match.group(1))

    def sample(self, start: float, label: str) -> Sample:
        with self.ps.oneshot():
            rss = self.ps.memory_info().rss / 2**20
            threads = self.ps.num_threads()
            fds = self.ps.num_fds()
        return Sample(time.monotonic() - start, label, rss, threads, fds, self.served())

    def served(self) -> int:
        """Successful inferences so far, from the statistics API."""
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["http"], timeout=10)
        try:
            conn.request("GET", f"/v2/models/{MODEL}/stats")
            stats = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])

    def stop(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -9


# -- load ----------------------------------------------------------------------------


def perf_analyzer_segment(
    binary: str, url: str, protocol: str, concurrency: int, until: float
) -> list[str]:
    """perf_analyzer runs back to back until ``until``; returns the errors seen."""
    errors: list[str] = []
    while time.monotonic() < until:
        cmd = [
            binary, "-m", MODEL, "-u", url, "-i", protocol, "--shape", f"INPUT0:{WIDTH}",
            "--concurrency-range", str(concurrency), "--measurement-interval", "2000",
            "--stability-percentage", "100", "--max-trials", "5",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            errors.append(
                f"perf_analyzer exit {result.returncode}: {result.stdout[-800:]}"
            )
            time.sleep(1)
    return errors


def python_segment(
    ports: dict[str, int], protocol: str, concurrency: int, until: float
) -> list[str]:
    """``concurrency`` threads sending requests back to back until ``until``."""
    errors: list[str] = []
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [1, WIDTH],
                    "data": list(range(WIDTH)),
                }
            ]
        }
    ).encode()

    def http_loop() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=30)
        while time.monotonic() < until:
            try:
                conn.request("POST", f"/v2/models/{MODEL}/infer", body)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(
                    "127.0.0.1", ports["http"], timeout=30
                )
        conn.close()

    def grpc_loop() -> None:
        import grpc
        import numpy as np
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        request = service_pb2.ModelInferRequest(model_name=MODEL)
        request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, WIDTH])
        request.raw_input_contents.append(np.arange(WIDTH, dtype=np.float32).tobytes())
        with grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            while time.monotonic() < until:
                try:
                    stub.ModelInfer(request, timeout=30)
                except grpc.RpcError as error:
                    errors.append(f"gRPC {error.code().name}: {error.details()}")

    loop = http_loop if protocol == "http" else grpc_loop
    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="load duration")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--segment-seconds", type=float, default=30.0,
                   help="time on one protocol before switching to the other")  # fmt: skip
    p.add_argument("--sample-seconds", type=float, default=30.0)
    p.add_argument("--warmup-minutes", type=float, default=1.0,
                   help="RSS growth is measured after this (at least one segment per protocol, at most half the run)")  # fmt: skip
    p.add_argument("--max-rss-growth-mib", type=float, default=5.0)
    p.add_argument("--perf-analyzer", default=os.environ.get("PERF_ANALYZER"),
                   help="perf_analyzer binary (default $PERF_ANALYZER; none: Python load)")  # fmt: skip
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra tritonx flag, repeatable")  # fmt: skip
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    total = args.minutes * 60
    # Each protocol gets at least two segments, and the warm-up covers the first
    # one of each (first-use allocations of a protocol are not a leak).
    segment = min(args.segment_seconds, max(total / 4, 1.0))
    warmup = min(max(args.warmup_minutes * 60, 2 * segment), total / 2)
    driver = "perf_analyzer" if args.perf_analyzer else "python"
    server = Server(args.repository, args.server_arg)
    start = time.monotonic()
    samples = [server.sample(start, "start")]
    errors: list[str] = []
    stop = threading.Event()
    phase = ["-"]

    def sampler() -> None:
        next_at, warmed = args.sample_seconds, False
        while not stop.is_set():
            now = time.monotonic() - start
            try:
                if not warmed and now >= warmup:
                    samples.append(server.sample(start, f"warm ({phase[0]})"))
                    warmed = True
                    if next_at - now < 1.0:  # no second sample at the same time
                        next_at += args.sample_seconds
                elif now >= next_at:
                    samples.append(server.sample(start, phase[0]))
                    next_at += args.sample_seconds
            except (psutil.Error, OSError, ValueError, KeyError):
                return  # the server is gone; main() reports it
            stop.wait(0.2)

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    protocol = "http"
    segments = {"http": 0, "grpc": 0}
    try:
        while time.monotonic() - start < total and server.process.poll() is None:
            phase[0] = protocol
            until = min(time.monotonic() + segment, start + total)
            if args.perf_analyzer:
                url = f"127.0.0.1:{server.ports[protocol]}"
                errors += perf_analyzer_segment(
                    args.perf_analyzer, url, protocol, args.concurrency, until
                )
            else:
                errors += python_segment(
                    server.ports, protocol, args.concurrency, until
                )
            segments[protocol] += 1
            protocol = "grpc" if protocol == "http" else "http"
    finally:
        stop.set()
        watcher.join()
    alive = server.process.poll() is None
    if alive:
        time.sleep(1.0)  # let the last responses settle
        samples.append(server.sample(start, "end"))
    code = server.stop() if alive else server.process.returncode

    print(f"soak: {args.minutes:g} min, driver {driver}, concurrency {args.concurrency}, "
          f"segments http {segments['http']} / grpc {segments['grpc']}, "
          f"warm-up {warmup:.0f} s")  # fmt: skip
    print("| t (s) | phase | RSS (MiB) | threads | fds | inferences |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for s in samples:
        print(f"| {s.seconds:.0f} | {s.label} | {s.rss_mib:.1f} | {s.threads} | {s.fds} "
              f"| {s.requests} |")  # fmt: skip
    first, last = samples[0], samples[-1]
    base = next((s for s in samples if s.label.startswith("warm")), first)
    growth = last.rss_mib - base.rss_mib
    elapsed = max(last.seconds - first.seconds, 1e-9)
    print(f"RSS: {first.rss_mib:.1f} -> {base.rss_mib:.1f} (warm) -> {last.rss_mib:.1f} MiB; "
          f"growth after warm-up {growth:+.1f} MiB (limit {args.max_rss_growth_mib:g})")  # fmt: skip
    print(f"threads: {first.threads} -> {last.threads}; fds: {first.fds} -> {last.fds}; "
          f"{last.requests} inferences, {last.requests / elapsed:.0f}/s")  # fmt: skip
    print(f"request errors: {len(errors)}; server exit code: {code}")
    for error in errors[:5]:
        print(f"  {error}")
    failed = not alive or code != 0 or bool(errors) or growth > args.max_rss_growth_mib
    if not alive:
        print("server died:\n" + "".join(server.log[-40:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
