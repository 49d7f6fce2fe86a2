"""HTTPS on the HTTP frontend (tritonx flags, parallel to gRPC's): server-side TLS
and mutual TLS, with certificates made on the spot (tests/tlsutil.py). Every case
runs on both engines: Python's ssl module and the C++ server's OpenSSL."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tritonx._native", reason="core not built")
import gevent.ssl
import numpy as np
import tritonclient.http as httpclient
from hardeningutil import IDENTITY_CONFIG
from serverutil import RunningServer, run_server
from testmodels import ECHO_MODEL
from tlsutil import Pki, make_pki

from tritonx import _native


@pytest.fixture(scope="module", params=["python", "native"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "native" and getattr(_native, "HttpServer", None) is None:
        pytest.skip("built without the C++ HTTP server")
    return str(request.param)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tls_repo")
    (root / "identity" / "1").mkdir(parents=True)
    (root / "identity" / "config.pbtxt").write_text(IDENTITY_CONFIG)
    (root / "identity" / "1" / "model.py").write_text(ECHO_MODEL)
    return root


def _tls_flags(pki: Pki, engine: str, mutual: bool) -> list[str]:
    flags = [
        f"--http-engine={engine}",
        "--allow-grpc=false",
        "--allow-metrics=false",
        f"--http-server-cert={pki.server_cert}",
        f"--http-server-key={pki.server_key}",
    ]
    if mutual:
        return [*flags, "--http-use-ssl-mutual=true", f"--http-root-cert={pki.ca_cert}"]
    return [*flags, "--http-use-ssl=true"]


@pytest.fixture(scope="module")
def mutual(repo: Path, pki: Pki, engine: str) -> Iterator[RunningServer]:
    with run_server(repo, *_tls_flags(pki, engine, mutual=True)) as running:
        yield running


def _context(
    pki: Pki, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def _get_live(port: int, context: ssl.SSLContext | None) -> int:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=10
        )
    else:
        conn = http.client.HTTPSConnection(
            "localhost", port, timeout=10, context=context
        )
    try:
        conn.request("GET", "/v2/health/live")
        return conn.getresponse().status
    finally:
        conn.close()


def test_tritonclient_over_mutual_tls(mutual: RunningServer, pki: Pki) -> None:
    client = httpclient.InferenceServerClient(
        f"localhost:{mutual.ports['http']}",
        ssl=True,
        ssl_options={
            "ca_certs": str(pki.ca_cert),
            "certfile": str(pki.client_cert),
            "keyfile": str(pki.client_key),
        },
        ssl_context_factory=gevent.ssl.create_default_context,
    )
    try:
        assert client.is_server_live()
        data = np.arange(5, dtype=np.float32)
        infer_input = httpclient.InferInput("INPUT0", [5], "FP32")
        infer_input.set_data_from_numpy(data)
        result = client.infer("identity", [infer_input])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
    finally:
        client.close()


# What a refused client sees depends on the TLS version and timing: an alert
# (SSLError), a reset, or a connection closed without an HTTP answer.
REFUSED = (ssl.SSLError, ConnectionError, http.client.HTTPException)


def test_plaintext_is_refused(mutual: RunningServer) -> None:
    with pytest.raises(REFUSED):
        _get_live(mutual.ports["http"], None)


@pytest.mark.parametrize("who", ["no certificate", "rogue certificate"])
def test_mutual_tls_refuses_unknown_clients(
    mutual: RunningServer, pki: Pki, who: str
) -> None:
    context = (
        _context(pki)
        if who == "no certificate"
        else _context(pki, pki.rogue_client_cert, pki.rogue_client_key)
    )
    with pytest.raises(REFUSED):
        _get_live(mutual.ports["http"], context)
    # The server keeps serving good clients.
    good = _context(pki, pki.client_cert, pki.client_key)
    assert _get_live(mutual.ports["http"], good) == 200


def test_server_side_tls(repo: Path, pki: Pki, engine: str) -> None:
    with run_server(repo, *_tls_flags(pki, engine, mutual=False)) as server:
        port = server.ports["http"]
        assert _get_live(port, _context(pki)) == 200
        with pytest.raises(REFUSED):
            _get_live(port, None)
        # A client that does not trust the server's CA refuses it.
        with pytest.raises(ssl.SSLCertVerificationError):
            _get_live(port, ssl.create_default_context(cafile=str(pki.rogue_ca_cert)))
        conn = http.client.HTTPSConnection("localhost", port, context=_context(pki))
        body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2]}]}
        body["inputs"][0]["data"] = [1.5, 2.5]
        conn.request("POST", "/v2/models/identity/infer", json.dumps(body))
        reply = conn.getresponse()
        assert reply.status == 200
        assert json.loads(reply.read())["outputs"][0]["data"] == [1.5, 2.5]
        conn.close()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--http-use-ssl=true"],
            "--http-use-ssl needs --http-server-cert and --http-server-key",
        ),
        (
            [
                "--http-use-ssl-mutual=true",
                "--http-server-cert=CERT",
                "--http-server-key=KEY",
            ],
            "--http-use-ssl-mutual needs --http-root-cert",
        ),
        (
            ["--http-use-ssl=true", "--http-server-cert=KEY", "--http-server-key=KEY"],
            "failed to load --http-server-cert",
        ),
    ],
)
def test_bad_tls_setup_fails_start(
    repo: Path, pki: Pki, engine: str, flags: list[str], message: str
) -> None:
    flags = [
        f.replace("CERT", str(pki.server_cert)).replace("KEY", str(pki.server_key))
        for f in flags
    ]
    with run_server(
        repo,
        f"--http-engine={engine}",
        "--allow-grpc=false",
        "--allow-metrics=false",
        *flags,
        expect_ready=False,
    ) as server:
        assert server.process.wait(timeout=60) == 1
    log = server.log_text()
    assert f"error: creating server: Invalid argument - {message}" in log, log
