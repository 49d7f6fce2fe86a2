"""Soak test: hours-long load in miniature, watching the server's resources.

Runs ``python -m tritonx`` and drives one workload (``--workload``, see
``soak_workloads.py``) with perf_analyzer (``$PERF_ANALYZER`` or
``--perf-analyzer``), alternating its protocols one segment at a time; ``identity``
(the default, on model_repository/) can also run on a Python load loop when there is
no perf_analyzer. The other workloads cover the paths where Triton users report
leaks: ``decoupled`` (gRPC stream, four responses per request), ``bls`` (a BLS model
calling another with exec and async_exec), ``sequence`` (sequences of six, state per
correlation ID) and ``lifecycle`` (a two-instance model loaded, used and unloaded in
a loop beside the load, in EXPLICIT mode).

The server's RSS, thread count and open file descriptors, and the RSS and number of
its child processes (the models' stubs), are sampled with psutil at the start, at the
end of the warm-up, every ``--sample-seconds`` and at the end. The exit status is
non-zero when the server's or the stubs' RSS grew by more than
``--max-rss-growth-mib`` after the warm-up, when the number of child processes at the
end differs from the start, when any request failed, or when the server died or did
not exit 0.

    PYTHONPATH=python python benchmarks/soak.py                  # 10 minutes
    PYTHONPATH=python python benchmarks/soak.py --minutes 0.5    # smoke run
    PERF_ANALYZER=/work/shared/tools/perf_analyzer PYTHONPATH=python \\
        python benchmarks/soak.py --minutes 60 --concurrency 8 --workload decoupled
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak_workloads import WIDTH, WORKLOADS, Workload

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
    children: int
    children_rss_mib: float
    requests: int


class Server:
    """tritonx in a subprocess, its log kept in memory, ports read from the log."""

    def __init__(self, repo: Path, model: str, extra: Sequence[str]) -> None:
        cmd = [
            sys.executable, "-m", "tritonx", f"--model-repository={repo}",
            "--http-port=0", "--grpc-port=0", "--metrics-port=0",
            "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", *extra,
        ]  # fmt: skip
        self.model = model
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
        children, children_rss = 0, 0.0
        for child in self.ps.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                children_rss += child.memory_info().rss / 2**20
                children += 1
        return Sample(
            time.monotonic() - start, label, rss, threads, fds, children,
            children_rss, self.served(),
        )  # fmt: skip

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """One HTTP request; raises RuntimeError on a status other than 200."""
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["http"], timeout=60)
        try:
            conn.request(method, path, body)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(
                f"{method} {path}: HTTP {response.status} {data[:300]!r}"
            )
        return data

    def served(self) -> int:
        """Successful inferences so far, from the statistics API."""
        stats = json.loads(self.request("GET", f"/v2/models/{self.model}/stats"))
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


def _infer_body(batch_dim: bool) -> bytes:
    shape = [1, WIDTH] if batch_dim else [WIDTH]
    tensor = {"name": "INPUT0", "datatype": "FP32", "shape": shape,
              "data": list(range(WIDTH))}  # fmt: skip
    return json.dumps({"inputs": [tensor]}).encode()


def perf_analyzer_segment(
    binary: str, url: str, protocol: str, concurrency: int, until: float,
    workload: Workload,
) -> list[str]:  # fmt: skip
    """perf_analyzer runs back to back until ``until``; returns the errors seen."""
    errors: list[str] = []
    shape = ("--shape", workload.shape) if workload.shape else ()
    while time.monotonic() < until:
        cmd = [
            binary, "-m", workload.model, "-u", url, "-i", protocol, *shape,
            *workload.perf_args, "--concurrency-range", str(concurrency),
            "--measurement-interval", "2000", "--stability-percentage", "100",
            "--max-trials", "5",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            errors.append(
                f"perf_analyzer exit {result.returncode}: {result.stdout[-800:]}"
            )
            time.sleep(1)
    return errors


def python_segment(
    ports: dict[str, int], protocol: str, concurrency: int, until: float, model: str
) -> list[str]:
    """``concurrency`` threads sending requests back to back until ``until``."""
    errors: list[str] = []
    body = _infer_body(batch_dim=True)

    def http_loop() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=30)
        while time.monotonic() < until:
            try:
                conn.request("POST", f"/v2/models/{model}/infer", body)
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

        request = service_pb2.ModelInferRequest(model_name=model)
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


class Churn:
    """Loads, uses (three inferences) and unloads one model in a loop.

    ``quiet()`` holds the loop between cycles, so a sample never counts the churned
    model's stubs: every sample sees the same set of long-lived processes.
    """

    def __init__(self, server: Server, model: str) -> None:
        self.server, self.model = server, model
        self.cycles = 0
        self.errors: list[str] = []
        self._between_cycles = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        repo = f"/v2/repository/models/{self.model}"
        body = _infer_body(batch_dim=False)
        while not self._stop.is_set():
            with self._between_cycles:
                try:
                    self.server.request("POST", f"{repo}/load", b"{}")
                    for _ in range(3):
                        self.server.request(
                            "POST", f"/v2/models/{self.model}/infer", body
                        )
                    self.server.request("POST", f"{repo}/unload", b"{}")
                    self.cycles += 1
                except (RuntimeError, OSError, http.client.HTTPException) as exc:
                    self.errors.append(f"churn: {exc}")
                    self._stop.wait(1.0)
            time.sleep(0.01)  # let a waiting sampler in

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        with self._between_cycles:
            yield

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="load duration")
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="identity")
    p.add_argument("--repository", type=Path, default=None,
                   help="serve this repository (identity workload only)")  # fmt: skip
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
    args = p.parse_args(argv)
    if args.workload != "identity" and not args.perf_analyzer:
        p.error(f"--workload {args.workload} needs perf_analyzer (--perf-analyzer)")
    if args.repository is not None and args.workload != "identity":
        p.error("--repository applies to the identity workload only")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workload = WORKLOADS[args.workload]
    with tempfile.TemporaryDirectory(prefix="tritonx-soak-") as scratch:
        repo = args.repository or workload.repository(Path(scratch))
        server = Server(repo, workload.model, [*workload.server_args, *args.server_arg])
        return soak(args, workload, server)


def soak(args: argparse.Namespace, workload: Workload, server: Server) -> int:
    total = args.minutes * 60
    protocols = workload.protocols
    # Each protocol gets at least two segments, and the warm-up covers the first
    # one of each (first-use allocations of a protocol are not a leak).
    segment = min(args.segment_seconds, max(total / (2 * len(protocols)), 1.0))
    warmup = min(max(args.warmup_minutes * 60, len(protocols) * segment), total / 2)
    driver = "perf_analyzer" if args.perf_analyzer else "python"
    start = time.monotonic()
    samples = [server.sample(start, "start")]
    churn = Churn(server, workload.churn_model) if workload.churn_model else None
    quiet = churn.quiet if churn else contextlib.nullcontext
    errors: list[str] = []
    stop = threading.Event()
    phase = ["-"]

    def sampler() -> None:
        next_at, warmed = args.sample_seconds, False
        while not stop.is_set():
            now = time.monotonic() - start
            try:
                if not warmed and now >= warmup:
                    with quiet():
                        samples.append(server.sample(start, f"warm ({phase[0]})"))
                    warmed = True
                    if next_at - now < 1.0:  # no second sample at the same time
                        next_at += args.sample_seconds
                elif now >= next_at:
                    with quiet():
                        samples.append(server.sample(start, phase[0]))
                    next_at += args.sample_seconds
            except (psutil.Error, OSError, RuntimeError, ValueError, KeyError):
                return  # the server is gone; main() reports it
            stop.wait(0.2)

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    turn = 0
    segments = dict.fromkeys(protocols, 0)
    try:
        while time.monotonic() - start < total and server.process.poll() is None:
            protocol = protocols[turn % len(protocols)]
            phase[0] = protocol
            until = min(time.monotonic() + segment, start + total)
            if args.perf_analyzer:
                url = f"127.0.0.1:{server.ports[protocol]}"
                errors += perf_analyzer_segment(
                    args.perf_analyzer, url, protocol, args.concurrency, until, workload
                )
            else:
                errors += python_segment(
                    server.ports, protocol, args.concurrency, until, workload.model
                )
            segments[protocol] += 1
            turn += 1
    finally:
        stop.set()
        watcher.join()
        if churn:
            churn.stop()
            errors += churn.errors
    alive = server.process.poll() is None
    if alive:
        time.sleep(1.0)  # let the last responses settle and unloaded stubs exit
        samples.append(server.sample(start, "end"))
    code = server.stop() if alive else server.process.returncode
    return report(args, workload, samples, segments, warmup, driver, churn, errors,
                  alive, code, server.log)  # fmt: skip


def report(
    args: argparse.Namespace, workload: Workload, samples: list[Sample],
    segments: dict[str, int], warmup: float, driver: str, churn: Churn | None,
    errors: list[str], alive: bool, code: int | None, log: list[str],
) -> int:  # fmt: skip
    shown = " / ".join(f"{p} {n}" for p, n in segments.items())
    print(f"soak: workload {workload.name} (model {workload.model}), "
          f"{args.minutes:g} min, driver {driver}, concurrency {args.concurrency}, "
          f"segments {shown}, warm-up {warmup:.0f} s"
          + (f", {churn.cycles} load/unload cycles of {workload.churn_model}"
             if churn else ""))  # fmt: skip
    print("| t (s) | phase | RSS (MiB) | threads | fds | children | children RSS (MiB) "
          "| inferences |")  # fmt: skip
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in samples:
        print(f"| {s.seconds:.0f} | {s.label} | {s.rss_mib:.1f} | {s.threads} | {s.fds} "
              f"| {s.children} | {s.children_rss_mib:.1f} | {s.requests} |")  # fmt: skip
    first, last = samples[0], samples[-1]
    base = next((s for s in samples if s.label.startswith("warm")), first)
    growth = last.rss_mib - base.rss_mib
    child_growth = last.children_rss_mib - base.children_rss_mib
    elapsed = max(last.seconds - first.seconds, 1e-9)
    limit = args.max_rss_growth_mib
    print(f"RSS: {first.rss_mib:.1f} -> {base.rss_mib:.1f} (warm) -> {last.rss_mib:.1f} MiB; "
          f"growth after warm-up {growth:+.1f} MiB (limit {limit:g})")  # fmt: skip
    print(f"children RSS: {first.children_rss_mib:.1f} -> {base.children_rss_mib:.1f} "
          f"(warm) -> {last.children_rss_mib:.1f} MiB; growth after warm-up "
          f"{child_growth:+.1f} MiB (limit {limit:g}); children {first.children} -> "
          f"{last.children}")  # fmt: skip
    print(f"threads: {first.threads} -> {last.threads}; fds: {first.fds} -> {last.fds}; "
          f"{last.requests} inferences, {last.requests / elapsed:.0f}/s")  # fmt: skip
    print(f"request errors: {len(errors)}; server exit code: {code}")
    for error in errors[:5]:
        print(f"  {error}")
    failed = (
        not alive
        or code != 0
        or bool(errors)
        or growth > limit
        or child_growth > limit
        or last.children != first.children
    )
    if not alive:
        print("server died:\n" + "".join(log[-40:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
