"""Shared pieces of the fuzz suites: example budget, oracles, raw HTTP, prober.

The oracle (what every fuzzed answer must satisfy) is written once here so the
HTTP and gRPC suites judge alike:

* the server process is alive after every request;
* every request is answered (or, for requests incomplete by construction, the
  connection closed) within ``ANSWER_S`` seconds;
* client mistakes are answered with a 4xx status / a client-error gRPC code;
* a 5xx / INTERNAL answer is accepted only where Triton 2.51 itself answers it
  (checked against the real server): HTTP 500 for JSON it cannot read
  (TritonJson's messages, prefixes in ``TRITON_HTTP_INTERNAL``), 501 for
  unsupported features, 503 for load/unload outside explicit mode; gRPC
  INTERNAL "Unable to parse request" for bytes that are no protobuf message;
* no answer carries implementation text (``LEAK``): Python exception names,
  tracebacks, pybind11 casting messages, interpreter wording.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import seed as hypothesis_seed

ANSWER_S = 5.0  # every request answered within this (the liveness bound)
# In CI the liveness probe only catches stalls (a probe waiting seconds), never
# timing on a shared runner; scripts/fuzz-long.sh sets the tight 50 ms bound.
LIVE_MS = float(os.environ.get("TRITONX_FUZZ_LIVE_MS", str(ANSWER_S * 1000)))
EXAMPLES = int(os.environ.get("TRITONX_FUZZ_EXAMPLES", "300"))  # per protocol
SEED = os.environ.get("TRITONX_FUZZ_SEED")  # unset: derandomized (CI)
# Long form: count every outcome and write them here (JSON) instead of stopping
# at the first bad answer; the test still fails at its end if any was bad.
TALLY_PATH = os.environ.get("TRITONX_FUZZ_TALLY")
HERE = Path(__file__).resolve().parent
MAX_INPUT = 1 << 20  # the fuzz server's --http-max-input-size: cheap to exceed

F = TypeVar("F", bound=Callable[..., Any])


def fuzz(share: float, budget: int | None = None) -> Callable[[F], F]:
    """Hypothesis settings for one fuzz test taking ``share`` of the budget
    (``budget`` examples, default EXAMPLES per protocol).

    CI runs are derandomized (the same examples every run); the long form sets
    TRITONX_FUZZ_SEED, which seeds every test and is printed in the header.
    """
    count = max(10, round((EXAMPLES if budget is None else budget) * share))

    def wrap(fn: F) -> F:
        configured = settings(
            max_examples=count,
            deadline=None,
            derandomize=SEED is None,
            database=None,
            print_blob=True,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.filter_too_much,
                HealthCheck.large_base_example,
            ],
        )(fn)
        if SEED is not None:
            configured = hypothesis_seed(int(SEED))(configured)
        return configured

    return wrap


class Target:
    """The server under test, with a short repr for Hypothesis' reports."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.http_port: int = server.ports["http"]
        self.grpc_url: str = server.grpc_url

    def __repr__(self) -> str:
        return f"Target(http={self.http_port}, grpc={self.grpc_url})"

    def alive(self) -> bool:
        return bool(self.server.process.poll() is None)

    def log_tail(self, chars: int = 3000) -> str:
        return str(self.server.log_text()[-chars:])


# -- oracle -------------------------------------------------------------------------

LEAK = re.compile(
    "|".join(
        [
            r"Traceback",
            r"pybind11",
            r"Unable to cast",
            r"incompatible (?:constructor|function) arguments",
            r"Invoked with",
            r"returned a result with an exception set",
            r"tritonx\._C",
            r'File "',
            r"\b(?:Type|Value|Key|Attribute|Index|Overflow|Recursion|Unicode"
            r"(?:Encode|Decode)?|Memory|Assertion|Runtime|System|Name|ZeroDivision"
            r"|Buffer|Lookup|NotImplemented)Error\b",
            r"codec can't (?:en|de)code",
            r"surrogates not allowed",
            r"object has no attribute",
            r"'NoneType'",
            r"is not subscriptable",
            r"unsupported operand type",
            r"not supported between instances",
            r"invalid literal for int",
            r"could not convert",
            r"Python int too large",
            r"int too big to convert",
            r"\bndarray\b",
            r"\bnumpy\b",
        ]
    )
)

# HTTP 500 bodies Triton 2.51 answers for JSON it cannot read (TritonJson errors
# are INTERNAL in Triton's HTTP frontend).
TRITON_HTTP_INTERNAL = (
    "failed to parse the request JSON buffer",
    "Unable to parse '",
    "Unable to parse JSON bytes array: ",  # BYTES `data` of another JSON type
    "attempt to access ",
    "attempt to get members for non-object",  # a load's `parameters` not an object
    "failed to get request params.",
    "unexpected error on creating Triton parameter",
)
TRITON_HTTP_UNSUPPORTED = (  # 501
    "Unsupported compression type",
    "HTTP end point doesn't support models with decoupled",
)
TRITON_HTTP_UNAVAILABLE = (  # 503 in the fuzz server (model control mode none)
    "explicit model load / unload is not allowed if polling is enabled",
)


def leak(text: str) -> str | None:
    match = LEAK.search(text)
    return match.group(0) if match else None


def error_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    return body.decode("utf-8", "replace")


def http_verdict(
    status: int, body: bytes, extra_503: tuple[str, ...] = ()
) -> str | None:
    """None when (status, body) is an acceptable answer to a fuzzed request."""
    if status < 400:
        return None
    message = error_message(body)
    found = leak(message)
    if found:
        return f"{status} leaks implementation text {found!r}: {message[:300]!r}"
    if status < 500:
        return None
    allowed = {
        500: TRITON_HTTP_INTERNAL,
        501: TRITON_HTTP_UNSUPPORTED,
        503: TRITON_HTTP_UNAVAILABLE + extra_503,
    }.get(status, ())
    if any(message.startswith(prefix) for prefix in allowed):
        return None
    return f"{status} where Triton answers a client error: {message[:300]!r}"


class Tally:
    """Outcome counts per protocol; in tally mode failures are collected."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.failures: list[str] = []  # bad outcomes of the current test
        self.samples: dict[str, list[str]] = {}
        self.live = {"probes": 0, "failures": 0, "max_ms": 0.0}
        self.slowest: list[tuple[float, str]] = []  # (seconds, request), worst 5

    def record(self, protocol: str, categories: list[str], problem: str | None) -> None:
        counts = self.counts.setdefault(protocol, {})
        for category in ["requests", *categories]:
            counts[category] = counts.get(category, 0) + 1
        if problem is None:
            return
        if TALLY_PATH is None:
            raise AssertionError(problem)
        self.failures.append(problem)
        samples = self.samples.setdefault(protocol, [])
        if len(samples) < 50:
            samples.append(problem[:1000])

    def timing(self, seconds: float, shown: object) -> None:
        if len(self.slowest) < 5 or seconds > self.slowest[-1][0]:
            self.slowest.append((round(seconds, 4), repr(shown)[:300]))
            self.slowest.sort(reverse=True)
            del self.slowest[5:]

    def add_live(self, stats: dict[str, Any]) -> None:
        self.live["probes"] += stats["count"]
        self.live["failures"] += stats["failures"]
        self.live["max_ms"] = max(self.live["max_ms"], stats["max_ms"])
        self.live["raw_max_ms"] = max(
            self.live.get("raw_max_ms", 0.0), stats["raw_max_ms"]
        )

    def take_failures(self) -> list[str]:
        failures, self.failures = self.failures, []
        return failures

    def write(self) -> None:
        if TALLY_PATH is not None:
            doc = {
                "seed": SEED,
                "counts": self.counts,
                "liveness": self.live,
                "slowest": self.slowest,
                "samples": self.samples,
            }
            Path(TALLY_PATH).write_text(json.dumps(doc, indent=2))


TALLY = Tally()


# gRPC codes a server may answer a client's mistake with. INTERNAL and UNKNOWN are
# not among them: Triton uses INTERNAL only for bytes that are no protobuf message
# (grpc++'s "Unable to parse request"); UNAVAILABLE only where Triton does (load /
# unload outside explicit mode, or as ``extra`` allows).
GRPC_CLIENT_CODES = {
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "UNIMPLEMENTED",
    "RESOURCE_EXHAUSTED",
    "OUT_OF_RANGE",
    "FAILED_PRECONDITION",
    "ALREADY_EXISTS",
}
GRPC_UNPARSABLE = "Unable to parse request"


def grpc_verdict(
    code: str, details: str, *, parsable: bool = True, unavailable: tuple[str, ...] = ()
) -> str | None:
    """None when (code, details) is an acceptable answer to a fuzzed call."""
    if code == "OK":
        return None
    found = leak(details)
    if found:
        return f"{code} leaks implementation text {found!r}: {details[:300]!r}"
    if code == "DEADLINE_EXCEEDED":
        return f"no answer within {ANSWER_S} s"
    if not parsable and code == "INTERNAL" and details == GRPC_UNPARSABLE:
        # Triton's (grpc++) answer to bytes that are no such message. ``parsable``
        # comes from Python's protobuf (upb), which is stricter than the C++
        # parser both servers use (a known field with the wrong wire type is an
        # unknown field to C++): a client-error answer is fine there too.
        return None
    if code == "UNIMPLEMENTED" and not details:
        return "UNIMPLEMENTED without a message for an existing method"
    if code in GRPC_CLIENT_CODES:
        return None
    if code == "UNAVAILABLE" and any(details.startswith(u) for u in unavailable):
        return None
    return f"{code} where Triton answers a client error: {details[:300]!r}"


# -- raw HTTP ----------------------------------------------------------------------


@dataclass
class HttpAnswer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


@dataclass
class Exchange:
    answers: list[HttpAnswer]
    closed: bool  # the server closed the connection
    timed_out: bool  # nothing more within ANSWER_S, connection still open
    reset: bool = False
    garbage: bytes = b""  # bytes that did not parse as a response
    seconds: float = 0.0


def _parse_answers(data: bytes) -> tuple[list[HttpAnswer], bytes]:
    answers: list[HttpAnswer] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if (
            len(parts) < 2
            or not parts[0].startswith(b"HTTP/")
            or not parts[1].isdigit()
        ):
            return answers, data
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            decoded = _dechunk(rest)
            if decoded is None:
                break  # not all of it yet
            body, data = decoded
            answers.append(HttpAnswer(int(parts[1]), headers, body))
            continue
        length = int(headers.get(b"content-length", b"0") or b"0")
        if len(rest) < length:
            break
        answers.append(HttpAnswer(int(parts[1]), headers, rest[:length]))
        data = rest[length:]
    return answers, data


def _dechunk(data: bytes) -> tuple[bytes, bytes] | None:
    """A chunked body's bytes and what follows it; None until the last chunk (and
    the blank line after any trailers) has arrived."""
    body = b""
    while True:
        size_line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return None
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            return None  # not a chunk: left unparsed (the exchange's garbage)
        if size == 0:
            _, sep, after = rest.partition(b"\r\n\r\n")
            if rest.startswith(b"\r\n"):
                return body, rest[2:]
            return (body, after) if sep else None
        if len(rest) < size + 2:
            return None
        body += rest[:size]
        data = rest[size + 2 :]


def exchange(
    port: int,
    data: bytes,
    *,
    expect: int | None = None,
    half_close: bool = False,
    timeout: float = ANSWER_S,
) -> Exchange:
    """Send ``data`` on a fresh connection and collect the answers.

    Reads until the server closes, ``expect`` answers arrived, or ``timeout``
    passes. ``half_close`` shuts our write side after sending (for requests that
    are incomplete by construction: the server must then give up on them).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    deadline = time.monotonic() + timeout
    received = b""
    closed = reset = False
    try:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            reset = True  # the server answered and closed before reading all of it
        while not reset:
            if expect is not None and len(_parse_answers(received)[0]) >= expect:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                break
            except ConnectionResetError:
                reset = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    finally:
        sock.close()
    answers, rest = _parse_answers(received)
    done = closed or reset or (expect is not None and len(answers) >= expect)
    elapsed = timeout - (deadline - time.monotonic())
    return Exchange(answers, closed, not done, reset, rest, elapsed)


def request_bytes(
    method: str,
    path: str | bytes,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    content_length: bool = True,
) -> bytes:
    target = (
        path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")
    )
    lines = [
        method.encode("latin-1") + b" " + target + b" HTTP/1.1",
        b"Host: 127.0.0.1",
    ]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode("latin-1", "replace"))
    if content_length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# Triton 2.51 (libevhtp) drops the connection without an answer when a URL, header
# name or header value reaches 8 KiB (checked against the real server); tritonx
# does the same, so such a request may go unanswered.
TRITON_FIELD_LIMIT = 8191


def oversized_head_field(request: bytes) -> bool:
    """Whether the first request's URL or a header name / value is >= 8 KiB."""
    head = request.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    fields = lines[0].split(b" ")
    for line in lines[1:]:
        fields.extend(line.split(b":", 1))
    return any(len(field.strip()) >= TRITON_FIELD_LIMIT for field in fields)


SENTINEL = (
    b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
)


# -- liveness prober ----------------------------------------------------------------


class LivenessProber:
    """``liveness_probe.py`` in a subprocess, probing ``/v2/health/live``."""

    def __init__(self, port: int, server_pid: int = 0) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "liveness_probe.py"),
                str(port),
                str(server_pid),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def report(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        return dict(json.loads(self.process.stdout.readline()))

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def check(self) -> dict[str, Any]:
        """Asserts the probes since the last check all answered 200 within LIVE_MS
        (latency the server caused; CPU run-queue waits are not its doing)."""
        stats = self.report()
        TALLY.add_live(stats)
        assert stats["failures"] == 0, (
            f"/v2/health/live failed during the test: {stats}"
        )
        assert stats["max_ms"] < LIVE_MS, (
            f"/v2/health/live took {stats['max_ms']} ms (bound {LIVE_MS} ms): {stats}"
        )
        return stats
