"""``--grpc-infer-response-compression-level``: inference answers are compressed on
the wire, unary and streamed alike (Triton sets the level on both RPCs). The client
reaches the server through a TCP relay that counts the bytes the server sends, so
the test sees what travelled, not what the client decoded."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpcutil import make_input, write_repository
from serverutil import RunningServer, run_server

# A very compressible output: 4 MiB of zeros.
ZEROS = np.zeros((1, 1 << 20), np.float32)


class CountingRelay:
    """Relays TCP connections from a local port to ``target``, counting the bytes
    that come back from it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.from_server = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(
                target=self._pipe, args=(client, server, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(server, client, True), daemon=True
            ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                if count:
                    with self.lock:
                        self.from_server += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def received(self) -> int:
        with self.lock:
            return self.from_server

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module", params=["none", "high"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repo: Path = write_repository(tmp_path_factory.mktemp("compression"), ["identity"])
    with run_server(
        repo,
        "--allow-http=false",
        f"--grpc-infer-response-compression-level={request.param}",
    ) as running:
        running.compression = request.param  # type: ignore[attr-defined]
        yield running


def _bytes_back(server: RunningServer, send) -> int:
    host, port = server.grpc_url.rsplit(":", 1)
    relay = CountingRelay((host, int(port)))
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{relay.port}")
        try:
            output = send(client)
        finally:
            client.close()
        np.testing.assert_array_equal(output, ZEROS)
        return relay.received()
    finally:
        relay.close()


def _unary(client: grpcclient.InferenceServerClient) -> np.ndarray:
    return client.infer("identity", [make_input("INPUT0", ZEROS)]).as_numpy("OUTPUT0")


def _streamed(client: grpcclient.InferenceServerClient) -> np.ndarray:
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("identity", [make_input("INPUT0", ZEROS)])
        result, error = answers.get(timeout=60)
    finally:
        client.stop_stream()
    assert error is None
    return result.as_numpy("OUTPUT0")


@pytest.mark.parametrize("send", [_unary, _streamed], ids=["unary", "stream"])
def test_answers_are_compressed_at_the_configured_level(
    server: RunningServer, send
) -> None:
    sent_back = _bytes_back(server, send)
    if server.compression == "none":  # type: ignore[attr-defined]
        assert sent_back > ZEROS.nbytes
    else:
        assert sent_back < ZEROS.nbytes // 20
