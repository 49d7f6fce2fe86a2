"""L0_https's client checks against tritonx's own HTTPS (--http-use-ssl), on both
HTTP engines. Triton serves no HTTPS itself (its QA puts nginx in front of it), so
there is nothing to compare with: these check tritonx alone, as L0_https checks its
proxy: tritonclient's sync and aio clients infer over TLS with the CA (and a client
certificate the server does not ask for), with verification off (``--insecure``),
and fail over plain HTTP. Mutual TLS, refused clients and bad flags are
test_http_tls.py's.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("tritonx._native", reason="core not built")
import gevent.ssl
import numpy as np
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from serverutil import RunningServer, run_server
from testmodels import ECHO_FP32_CONFIG, ECHO_MODEL, write_model
from tlsutil import Pki, make_pki
from tritonclient.utils import InferenceServerException

from tritonx import _native

DATA = np.arange(6, dtype=np.float32)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module", params=["python", "native"])
def server(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, request: pytest.FixtureRequest
) -> Iterator[RunningServer]:
    if request.param == "native" and getattr(_native, "HttpServer", None) is None:
        pytest.skip("built without the C++ HTTP server")
    repo = tmp_path_factory.mktemp("https_repo")
    write_model(repo, "echo", ECHO_FP32_CONFIG, ECHO_MODEL)
    with run_server(
        repo,
        f"--http-engine={request.param}",
        "--allow-grpc=false",
        "--allow-metrics=false",
        "--http-use-ssl=true",
        f"--http-server-cert={pki.server_cert}",
        f"--http-server-key={pki.server_key}",
    ) as running:
        yield running


def _inputs(module: Any) -> list[Any]:
    tensor = module.InferInput("INPUT0", [len(DATA)], "FP32")
    tensor.set_data_from_numpy(DATA)
    return [tensor]


def _sync_infer(url: str, **options: Any) -> Any:
    client = httpclient.InferenceServerClient(url, network_timeout=30, **options)
    try:
        assert client.is_server_live()
        return client.infer("echo", _inputs(httpclient)).as_numpy("OUTPUT0")
    finally:
        client.close()


def _aio_infer(url: str, **options: Any) -> Any:
    async def run() -> Any:
        client = aiohttpclient.InferenceServerClient(url, conn_timeout=30, **options)
        try:
            assert await client.is_server_live()
            result = await client.infer("echo", _inputs(aiohttpclient))
            return result.as_numpy("OUTPUT0")
        finally:
            await client.close()

    return asyncio.run(run())


def _url(server: RunningServer) -> str:
    return f"localhost:{server.ports['http']}"


def test_sync_client_with_certificates(server: RunningServer, pki: Pki) -> None:
    """simple_http_infer_client.py --ssl --key-file --cert-file --ca-certs"""
    seen = _sync_infer(
        _url(server),
        ssl=True,
        ssl_options={
            "ca_certs": str(pki.ca_cert),
            "certfile": str(pki.client_cert),
            "keyfile": str(pki.client_key),
        },
        ssl_context_factory=gevent.ssl.create_default_context,
    )
    np.testing.assert_array_equal(seen, DATA)


def test_aio_client_with_certificates(server: RunningServer, pki: Pki) -> None:
    """simple_http_aio_infer_client.py --ssl --key-file --cert-file --ca-certs"""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    np.testing.assert_array_equal(
        _aio_infer(_url(server), ssl=True, ssl_context=context), DATA
    )


def test_sync_client_without_verification(server: RunningServer) -> None:
    """simple_http_infer_client.py --ssl --insecure"""
    # As the QA client does for --insecure: an unverified context as well.
    seen = _sync_infer(
        _url(server),
        ssl=True,
        insecure=True,
        ssl_context_factory=gevent.ssl._create_unverified_context,
    )
    np.testing.assert_array_equal(seen, DATA)


def test_aio_client_without_verification(server: RunningServer) -> None:
    """simple_http_aio_infer_client.py --ssl --insecure"""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    np.testing.assert_array_equal(
        _aio_infer(_url(server), ssl=True, ssl_context=context), DATA
    )


def test_verification_needs_the_ca(server: RunningServer, pki: Pki) -> None:
    """A client that verifies against another CA refuses the server."""
    context = ssl.create_default_context(cafile=str(pki.rogue_ca_cert))
    with pytest.raises((ssl.SSLError, InferenceServerException, OSError)):
        _aio_infer(_url(server), ssl=True, ssl_context=context)


def test_plain_http_clients_fail(server: RunningServer) -> None:
    """The same clients without --ssl: no answer over a TLS port."""
    with pytest.raises(Exception) as sync_failure:
        _sync_infer(_url(server))
    assert not isinstance(sync_failure.value, AssertionError)
    with pytest.raises(Exception) as aio_failure:
        _aio_infer(_url(server))
    assert not isinstance(aio_failure.value, AssertionError)
