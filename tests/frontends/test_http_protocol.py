"""HttpConnection on a real uvloop socket: framing, pipelining, limits, encodings.

The handler used here echoes what the connection parsed; responses to requests whose
path starts with /slow are completed later, to check that pipelined responses still
come back in request order.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import socket
import threading
import zlib
from collections.abc import Iterator

import pytest
import uvloop

from tritonx.frontends.http_message import HttpMessage, Slot
from tritonx.frontends.http_protocol import HttpConnection
from tritonx.frontends.http_responses import response

LIMIT = 1000


def _echo(message: HttpMessage, slot: Slot) -> None:
    body = json.dumps(
        {
            "method": message.method.decode(),
            "url": message.url.decode(),
            "size": len(message.body),
            "body": message.body.decode("latin-1"),
        }
    ).encode()
    if message.url.startswith(b"/slow"):
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, slot.done, response(200, body))
    else:
        slot.done(response(200, body))


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    loop = uvloop.new_event_loop()
    connections: set[HttpConnection] = set()
    server = loop.run_until_complete(
        loop.create_server(
            lambda: HttpConnection(_echo, LIMIT, connections), "127.0.0.1", 0
        )
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.sockets[0].getsockname()[1]
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _raw(port: int, data: bytes, expect: int) -> list[bytes]:
    """Send bytes, read until ``expect`` responses arrived; return their bodies."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        buf = b""
        bodies: list[bytes] = []
        while len(bodies) < expect:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                length = int(
                    head.lower().split(b"\r\ncontent-length: ")[1].split(b"\r\n")[0]
                )
                if len(rest) < length:
                    break
                bodies.append(head.split(b"\r\n")[0] + b"\n" + rest[:length])
                buf = rest[length:]
        return bodies


def test_pipelined_responses_keep_request_order(port: int) -> None:
    requests = b"".join(
        f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        for p in ("/slow1", "/a", "/slow2", "/b")
    )
    bodies = _raw(port, requests, 4)
    urls = [json.loads(b.split(b"\n", 1)[1])["url"] for b in bodies]
    assert urls == ["/slow1", "/a", "/slow2", "/b"]


def test_keep_alive_reuses_connection(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for i in range(3):
        conn.request("POST", f"/x{i}", body=b"abc")
        reply = conn.getresponse()
        assert json.loads(reply.read())["body"] == "abc"
    conn.close()


def test_chunked_request_body(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", "/c", body=iter([b"hello ", b"chunked ", b"world"]))
    reply = conn.getresponse()
    assert json.loads(reply.read())["body"] == "hello chunked world"


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_compressed_request_body(port: int, encoding: str, pack: object) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    data = b"x" * 900
    conn.request("POST", "/z", body=pack(data), headers={"Content-Encoding": encoding})  # type: ignore[operator]
    assert json.loads(conn.getresponse().read())["size"] == 900


def test_unsupported_content_encoding(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", "/z", body=b"abc", headers={"Content-Encoding": "br"})
    reply = conn.getresponse()
    assert reply.status == 501
    assert reply.getheader("Accept-Encoding") == "gzip, deflate"
    assert json.loads(reply.read()) == {"error": "Unsupported compression type"}


def _too_large(reply: http.client.HTTPResponse) -> str:
    assert reply.status == 400
    message = json.loads(reply.read())["error"]
    assert "exceeds the maximum allowed value" in message
    assert "Use --http-max-input-size to increase the limit" in message
    return str(message)


def test_max_input_size_by_content_length_chunked_and_decompressed(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", "/big", body=b"x" * (LIMIT + 1))
    assert "Request JSON size of 1001 bytes" in _too_large(conn.getresponse())
    # The connection stays usable after the rejected body was drained.
    conn.request("POST", "/ok", body=b"x" * LIMIT)
    assert json.loads(conn.getresponse().read())["size"] == LIMIT
    conn.request("POST", "/big", body=iter([b"x" * 600, b"y" * 600]))
    _too_large(conn.getresponse())
    conn.request(
        "POST",
        "/big",
        body=gzip.compress(b"\0" * (LIMIT * 50)),
        headers={"Content-Encoding": "gzip"},
    )
    _too_large(conn.getresponse())


def test_http10_closes_after_response(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b'"url": "/old"' in data


def test_garbage_gets_400_and_close(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request")


def test_half_closed_client_gets_its_answers(port: int) -> None:
    """After shutdown(SHUT_WR) the answers owed still arrive, also ones completed
    later (Triton 2.51 answers such clients); then the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /slow/1 HTTP/1.1\r\n\r\nGET /fast/2 HTTP/1.1\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.index(b'"url": "/slow/1"') < data.index(b'"url": "/fast/2"')


def test_a_large_body_lets_the_loop_go_round_while_it_arrives() -> None:
    """uvloop reads a readable socket up to 32 times in one go: a connection stops
    reading after each 256 KiB it read, until the loop has gone round once (other
    connections' events in between), and then reads on; the body arrives whole."""
    loop = uvloop.new_event_loop()
    connections: set[HttpConnection] = set()
    reading: list[bool] = []
    bodies: list[bytes] = []

    class Watched(HttpConnection):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            transport = self._transport
            reading.append(transport is not None and transport.is_reading())

    def record(message: HttpMessage, slot: Slot) -> None:
        bodies.append(bytes(message.body))
        slot.done(response(200, b"ok"))

    server = loop.run_until_complete(
        loop.create_server(
            lambda: Watched(record, 64 << 20, connections), "127.0.0.1", 0
        )
    )
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    body = bytes(range(256)) * (16 << 12)  # 16 MiB
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = b"POST /big HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)
            sock.sendall(head + body)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert bodies == [body]
    assert False in reading, "never stopped reading"
    # Each pause lasted one loop iteration: reads went on after it.
    assert reading.count(False) >= (len(body) >> 18) // 2


def test_a_long_pipeline_lets_other_connections_in() -> None:
    """Handlers of one read's pipelined requests run a time slice per loop
    iteration: a request on another connection, sent once the first pipelined one
    was handled, is handled before the pipeline's last (one read holds all 4000)."""
    loop = uvloop.new_event_loop()
    connections: set[HttpConnection] = set()
    handled: list[bytes] = []
    other = socket.socket()

    def record(message: HttpMessage, slot: Slot) -> None:
        handled.append(message.url)
        if message.url == b"/p0":
            other.send(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        slot.done(response(200, b"ok"))

    server = loop.run_until_complete(
        loop.create_server(
            lambda: HttpConnection(record, LIMIT, connections), "127.0.0.1", 0
        )
    )
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    count = 4000
    pipeline = b"".join(b"GET /p%d HTTP/1.1\r\n\r\n" % i for i in range(count))
    try:
        other.connect(("127.0.0.1", port))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            while len(connections) < 2:  # both accepted
                threading.Event().wait(0.01)
            # The server reads the whole pipeline at once: reading is paused while
            # it is sent (what a full write buffer does), then resumed.
            paused = threading.Event()
            for conn in connections:
                loop.call_soon_threadsafe(conn.pause_writing)
            loop.call_soon_threadsafe(paused.set)  # after the pauses (FIFO)
            paused.wait(5)
            sock.sendall(pipeline)
            for conn in connections:
                loop.call_soon_threadsafe(conn.resume_writing)
            received = b""
            while received.count(b"HTTP/1.1 200") < count:
                chunk = sock.recv(1 << 16)
                assert chunk
                received += chunk
        other.settimeout(10)
        assert other.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        other.close()
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert len(handled) == count + 1
    assert handled.index(b"/other") < handled.index(b"/p%d" % (count - 1))
