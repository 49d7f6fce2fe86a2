"""Liveness prober, run as its own process so the test's GIL never skews it.

Usage: ``python liveness_probe.py PORT [SERVER_PID [INTERVAL_S]]``. Sends
``GET /v2/health/live`` over one keep-alive connection every INTERVAL_S (default
0.01) and times each answer. Commands on stdin, one per line: ``report`` prints one
JSON line with the statistics since the previous report and resets them; ``quit``
(or EOF) prints a last report and exits.

On a small shared machine a probe is often slow only because the server's event
loop thread (the main thread) or this prober was waiting for a CPU. With
SERVER_PID the Linux scheduler's per-thread run-queue wait
(``/proc/<pid>/task/<tid>/schedstat``) of both is subtracted: ``max_ms`` is the
latency the server itself caused (its loop busy, or waiting for the GIL), while
``raw_max_ms`` is the wall-clock worst case.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

_REQUEST = b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def run_queue_wait(path: str) -> float:
    """Seconds the thread has spent runnable but waiting for a CPU (0 if unknown)."""
    try:
        with open(path) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.raw_max = 0.0
        self.failures = 0
        self.first_failure = ""

    def add(self, latency: float | None, failure: str = "", raw: float = 0.0) -> None:
        with self.lock:
            if latency is not None:
                self.latencies.append(latency)
                self.raw_max = max(self.raw_max, raw)
            else:
                self.failures += 1
                self.first_failure = self.first_failure or failure

    def take(self) -> dict[str, object]:
        with self.lock:
            values = sorted(self.latencies)
            report: dict[str, object] = {
                "count": len(values),
                "failures": self.failures,
                "first_failure": self.first_failure,
                "max_ms": round(values[-1] * 1000, 2) if values else 0.0,
                "p99_ms": round(values[int(len(values) * 0.99)] * 1000, 2)
                if values
                else 0.0,
                "raw_max_ms": round(self.raw_max * 1000, 2),
            }
            self.latencies = []
            self.raw_max = 0.0
            self.failures = 0
            self.first_failure = ""
        return report


def _read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one response off ``sock``; returns its status code."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed mid-body")
        rest += chunk
    buffer[:] = rest[length:]
    return int(head.split(b" ", 2)[1])


def probe(
    port: int, server_pid: int, interval: float, stats: Stats, stop: threading.Event
) -> None:
    sock: socket.socket | None = None
    buffer = bytearray()
    loop_thread = (
        f"/proc/{server_pid}/task/{server_pid}/schedstat" if server_pid else ""
    )
    own_thread = "/proc/thread-self/schedstat" if server_pid else ""
    while not stop.is_set():
        waited = run_queue_wait(loop_thread) + run_queue_wait(own_thread)
        start = time.perf_counter()
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buffer.clear()
            sock.sendall(_REQUEST)
            status = _read_response(sock, buffer)
            if status != 200:
                raise ConnectionError(f"status {status}")
            raw = time.perf_counter() - start
            waited = run_queue_wait(loop_thread) + run_queue_wait(own_thread) - waited
            stats.add(max(raw - waited, 0.0), raw=raw)
        except (OSError, ValueError, IndexError) as exc:
            stats.add(None, f"{type(exc).__name__}: {exc}")
            if sock is not None:
                sock.close()
            sock = None
        stop.wait(interval)
    if sock is not None:
        sock.close()


def main() -> None:
    port = int(sys.argv[1])
    server_pid = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
    stats = Stats()
    stop = threading.Event()
    worker = threading.Thread(
        target=probe, args=(port, server_pid, interval, stats, stop)
    )
    worker.start()
    try:
        for line in sys.stdin:
            if line.strip() == "report":
                print(json.dumps(stats.take()), flush=True)
            elif line.strip() == "quit":
                break
    finally:
        stop.set()
        worker.join()
        print(json.dumps(stats.take()), flush=True)


if __name__ == "__main__":
    main()
