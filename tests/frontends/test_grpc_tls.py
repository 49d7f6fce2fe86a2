"""gRPC over TLS (``--grpc-use-ssl``) and mutual TLS (``--grpc-use-ssl-mutual``).

A real ``tritonx-server`` with certificates made on the spot (tests/tlsutil.py), driven
by the real ``tritonclient.grpc`` client with ``ssl=True``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonx._native", reason="core not built")
pytest.importorskip("cryptography", reason="the test extra makes the certificates")

import tritonclient.grpc as grpcclient
from serverutil import RunningServer, run_server
from testmodels import ECHO_MODEL
from tlsutil import Pki, make_pki
from tritonclient.utils import InferenceServerException

CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def _repo(root: Path) -> Path:
    version = root / "repo" / "echo" / "1"
    version.mkdir(parents=True)
    (root / "repo" / "echo" / "config.pbtxt").write_text(textwrap.dedent(CONFIG))
    (version / "model.py").write_text(textwrap.dedent(ECHO_MODEL))
    return root / "repo"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _repo(tmp_path_factory.mktemp("tls"))


def _tls_flags(pki: Pki, *, mutual: bool) -> list[str]:
    flags = [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={pki.server_cert}",
        f"--grpc-server-key={pki.server_key}",
        f"--grpc-root-cert={pki.ca_cert}",
        "--allow-http=false",
        "--allow-metrics=false",
    ]
    if mutual:
        flags.append("--grpc-use-ssl-mutual=true")
    return flags


@pytest.fixture(scope="module")
def tls_server(pki: Pki, repo: Path) -> Iterator[RunningServer]:
    with run_server(repo, *_tls_flags(pki, mutual=False)) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, repo: Path) -> Iterator[RunningServer]:
    with run_server(repo, *_tls_flags(pki, mutual=True)) as server:
        yield server


def _client(
    server: RunningServer,
    pki: Pki,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    ssl: bool = True,
) -> grpcclient.InferenceServerClient:
    # The server certificate names localhost and 127.0.0.1; the URL uses the IP.
    if not ssl:
        return grpcclient.InferenceServerClient(server.grpc_url)
    return grpcclient.InferenceServerClient(
        server.grpc_url,
        ssl=True,
        root_certificates=str(pki.ca_cert),
        private_key=str(key) if key else None,
        certificate_chain=str(cert) if cert else None,
    )


def _check_live_and_infer(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    inp = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    inp.set_data_from_numpy(data)
    result = client.infer("echo", [inp])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def _refused(client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.is_server_live(client_timeout=20)
    # The handshake fails: the call never reaches the server's handlers.
    assert info.value.status() in (
        "StatusCode.UNAVAILABLE",
        "StatusCode.DEADLINE_EXCEEDED",
    ), info.value


def test_tls_server_serves_a_tls_client(tls_server: RunningServer, pki: Pki) -> None:
    client = _client(tls_server, pki)
    try:
        _check_live_and_infer(client)
    finally:
        client.close()


def test_tls_server_refuses_a_plaintext_client(
    tls_server: RunningServer, pki: Pki
) -> None:
    client = _client(tls_server, pki, ssl=False)
    try:
        _refused(client)
    finally:
        client.close()


def test_mutual_tls_accepts_a_client_signed_by_the_ca(
    mtls_server: RunningServer, pki: Pki
) -> None:
    client = _client(mtls_server, pki, cert=pki.client_cert, key=pki.client_key)
    try:
        _check_live_and_infer(client)
    finally:
        client.close()


def test_mutual_tls_refuses_a_client_without_certificate(
    mtls_server: RunningServer, pki: Pki
) -> None:
    client = _client(mtls_server, pki)
    try:
        _refused(client)
    finally:
        client.close()


def test_mutual_tls_refuses_a_client_of_another_ca(
    mtls_server: RunningServer, pki: Pki
) -> None:
    client = _client(
        mtls_server, pki, cert=pki.rogue_client_cert, key=pki.rogue_client_key
    )
    try:
        _refused(client)
    finally:
        client.close()


def test_missing_certificate_file_stops_the_server(pki: Pki, repo: Path) -> None:
    flags = _tls_flags(pki, mutual=False)
    flags[1] = f"--grpc-server-cert={pki.server_cert.parent / 'missing.crt'}"
    with run_server(repo, *flags, expect_ready=False) as server:
        assert server.process.wait(timeout=60) != 0
    assert "missing.crt" in server.log_text()


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (
            "--grpc-server-key",
            "gRPC SSL needs a server certificate and key "
            "(--grpc-server-cert, --grpc-server-key)",
        ),
        ("--grpc-root-cert", "gRPC mutual SSL needs the CA certificate"),
    ],
)
def test_tls_without_its_files_says_which(
    pki: Pki, repo: Path, drop: str, message: str
) -> None:
    flags = [f for f in _tls_flags(pki, mutual=True) if not f.startswith(drop)]
    with run_server(repo, *flags, expect_ready=False) as server:
        assert server.process.wait(timeout=60) != 0
    assert "error: creating server: Invalid argument - " + message in server.log_text()
