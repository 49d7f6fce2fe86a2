"""Liveness prober, run as its own process so the test's GIL never skews it.

Usage: ``python liveness_probe.py PORT [INTERVAL_S]``. Sends ``GET /v2/health/live``
over one keep-alive connection every INTERVAL_S (default 0.01) and times each
answer. Commands on stdin, one per line: ``report`` prints one JSON line with the
statistics since the previous report (count, failures, max_ms, p99_ms, the worst
failure) and resets them; ``quit`` (or EOF) prints a last report and exits.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

_REQUEST = b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.failures = 0
        self.first_failure = ""

    def add(self, latency: float | None, failure: str = "") -> None:
        with self.lock:
            if latency is not None:
                self.latencies.append(latency)
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
            }
            self.latencies = []
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


def probe(port: int, interval: float, stats: Stats, stop: threading.Event) -> None:
    sock: socket.socket | None = None
    buffer = bytearray()
    while not stop.is_set():
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
            stats.add(time.perf_counter() - start)
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
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.01
    stats = Stats()
    stop = threading.Event()
    worker = threading.Thread(target=probe, args=(port, interval, stats, stop))
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
