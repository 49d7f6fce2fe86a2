"""Requests the HTTP parser refuses before any handler sees them: an unparsable
request line or header line, a head or body past the server's bounds.

Both engines answer them in Triton's error shape (JSON ``{"error": ...}``) and close
the connection; on the native engine these answers replace the HTML pages libevent's
evhttp writes itself (csrc/http/http_error_page.h). Triton 2.51 closes such
connections without an answer (checked against it by the differential test below):
tritonx differs only in saying why before closing, never in serving the request.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tritonx._native", reason="core not built")
from serverutil import (
    REFERENCE_CMD_ENV,
    RunningServer,
    run_http_only,
    run_reference,
    run_server,
)

MAX_INPUT = 4096

# name -> raw request; each is refused by the parser with 400 "Bad Request".
MALFORMED = {
    "request-line": b"HELLO\r\n\r\n",
    "header-line": b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "content-length": (
        b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
    ),
    "chunk-size": (
        b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty-repo")


@pytest.fixture(scope="module", params=["python", "native"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_http_only(
        repo, request.param, f"--http-max-input-size={MAX_INPUT}"
    ) as running:
        yield running


def _exchange(port: int, data: bytes, more: list[bytes] | None = None) -> bytes:
    """Sends `data` (then `more`), returns every byte received until the server
    closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(data)
            for piece in more or []:
                sock.sendall(piece)
        except OSError:
            pass  # the server answered and closed while we were still sending
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # closed with some of our bytes unread
        return received


def _parse(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def _json_error(reply: bytes) -> tuple[int, str]:
    """The status and message of a complete JSON error answer that closes."""
    status, headers, body = _parse(reply)
    assert headers["content-type"] == "application/json", reply
    assert headers["connection"] == "close", reply
    assert int(headers["content-length"]) == len(body), reply
    return status, str(json.loads(body)["error"])


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_gets_json_400(server: RunningServer, case: str) -> None:
    reply = _exchange(server.ports["http"], MALFORMED[case])
    assert _json_error(reply) == (400, "Bad Request")


def test_malformed_request_after_a_served_one(server: RunningServer) -> None:
    # Keep-alive: the second request on the connection is the bad one.
    good = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    reply = _exchange(server.ports["http"], good + MALFORMED["header-line"])
    first, _, rest = reply.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK"), reply
    assert _json_error(rest) == (400, "Bad Request")


def test_head_past_the_parser_bound_is_refused(
    server: RunningServer, request: pytest.FixtureRequest
) -> None:
    # ~400 KB of head in fields under the 8 KiB field limit: past every bound
    # (the native engine's evhttp stops reading at about twice the header limit
    # and cannot tell such a head from a malformed one).
    fields = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 4000) for i in range(100))
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"
    status, message = _json_error(_exchange(server.ports["http"], head))
    if request.node.callspec.params["server"] == "native":
        assert (status, message) == (400, "Bad Request")
    else:
        assert status == 431
        assert message.startswith("request header fields too large")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_json_body_past_twice_the_limit_is_400(
    server: RunningServer, chunked: bool
) -> None:
    """Bodies up to the cap (2^31 - 1 bytes here) are read, whatever the limit, and
    answered with their size; past the cap: test_http_input_size.py."""
    size = 3 * MAX_INPUT
    if chunked:
        head = b"Transfer-Encoding: chunked\r\n\r\n"
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (size, b" " * size)
    else:
        head = b"Content-Length: %d\r\n\r\n" % size
        body = b" " * size
    reply = _exchange(
        server.ports["http"],
        b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head,
        [body],
    )
    status, headers, body = _parse(reply)
    assert (status, headers["content-type"]) == (400, "application/json"), reply
    assert json.loads(body)["error"] == (
        f"Request JSON size of {size} bytes exceeds the maximum allowed value of "
        f"{MAX_INPUT} bytes. Use --http-max-input-size to increase the limit."
    )


@pytest.mark.skipif(
    not __import__("os").environ.get(REFERENCE_CMD_ENV),
    reason=f"{REFERENCE_CMD_ENV} not set",
)
def test_reference_closes_where_tritonx_answers_400(repo: Path) -> None:
    """Triton 2.51 serves none of these requests and closes each connection;
    tritonx does the same after its JSON 400."""
    with run_reference([repo]) as reference:
        for case, data in MALFORMED.items():
            answer = _exchange(reference.ports["http"], data)
            assert answer == b"", (case, answer)
    with run_server(repo, "--allow-grpc=false", "--allow-metrics=false") as ours:
        for case, data in MALFORMED.items():
            answer = _exchange(ours.ports["http"], data)
            assert _json_error(answer) == (400, "Bad Request"), case
