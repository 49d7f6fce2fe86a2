"""tritonx-perf's transport flags end to end: the real CLI against a real tritonx
server on loopback.

Each test makes the feature observable at the server or on the wire, so that a run
that did not use it fails: a model that refuses requests without the parameters it
wants, a TCP relay that counts the bytes the client sent (compressed or not), a
mutual-TLS gRPC port a plaintext client cannot use, and request start times that a
send schedule other than the intervals' would break.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from perfutil import IDENTITY, ok_run, one_error_line, perf, read_csv, success_count
from serverutil import RunningServer, run_server
from testmodels import ECHO_MODEL, write_model
from tlsutil import Pki, make_pki

pytestmark = pytest.mark.timeout(180)

# FP32 echo that fails every request whose parameters are not exactly these values
# of these types, and logs the parameters it saw (one JSON line per request).
PARAMS_CONFIG = """
name: "params"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
parameters { key: "log" value: { string_value: "LOG" } }
"""
PARAMS_MODEL = """
import json

import triton_python_backend_utils as pb_utils

WANTED = {"max_tokens": 256, "greedy": True, "tag": "hello world"}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.log = open(config["parameters"]["log"]["string_value"], "a")

    def execute(self, requests):
        out = []
        for r in requests:
            params = json.loads(r.parameters() or "{}")
            self.log.write(json.dumps(params, sort_keys=True) + "\\n")
            got = {k: params.get(k) for k in WANTED}
            if got != WANTED or any(type(got[k]) is not type(WANTED[k]) for k in got):
                out.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"missing request parameters: {params}")))
                continue
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        self.log.flush()
        return out
"""
PARAMETERS = [
    "--request-parameter",
    "max_tokens:256:int",
    "--request-parameter",
    "greedy:false:bool",
    "--request-parameter",
    "greedy:true:bool",  # the last value of a name wins, as in perf_analyzer
    "--request-parameter",
    "tag:hello world:string",
]


@pytest.fixture(scope="module")
def params_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("transport_log") / "params.log"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, params_log: Path
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("transport_repo")
    config = PARAMS_CONFIG.replace("LOG", str(params_log))
    write_model(repo, "params", config, PARAMS_MODEL)
    write_model(repo, "identity", IDENTITY, ECHO_MODEL)
    with run_server(repo) as server:
        yield server


def _url(server: RunningServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


@pytest.mark.parametrize(
    "protocol,extra",
    [
        ("grpc", []),
        ("grpc", ["--streaming"]),
        ("http", []),
        ("http", ["--input-tensor-format", "json", "--output-tensor-format", "json"]),
    ],
    ids=["grpc", "grpc-stream", "http-binary", "http-json"],
)
def test_request_parameters_reach_the_model(
    served: RunningServer, params_log: Path, protocol: str, extra: list[str]
) -> None:
    params_log.write_text("")
    before = success_count(served, "params")
    ok_run(
        "-m",
        "params",
        "-u",
        _url(served, protocol),
        "-i",
        protocol,
        "--shape",
        "INPUT0:4",
        "--request-count",
        "12",
        *PARAMETERS,
        *extra,
    )
    assert success_count(served, "params") - before == 12
    seen = [json.loads(line) for line in params_log.read_text().splitlines()]
    assert len(seen) == 12
    for params in seen:
        # Typed on the wire: an int, a bool and a string, not three strings.
        assert params == {"max_tokens": 256, "greedy": True, "tag": "hello world"}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_without_the_parameters_the_model_refuses(
    served: RunningServer, protocol: str
) -> None:
    # The same run less one parameter fails: the successes above are the flag's.
    result = perf(
        "-m",
        "params",
        "-u",
        _url(served, protocol),
        "-i",
        protocol,
        "--shape",
        "INPUT0:4",
        "--request-count",
        "3",
        *PARAMETERS[:-2],
    )
    assert "missing request parameters" in one_error_line(result)


@pytest.mark.parametrize(
    "value,message",
    [
        ("a:1", "must be name:value:type"),
        ("a:b:c:string", "must be name:value:type"),
        (":1:int", "the name is empty"),
        ("a:1:float", "unsupported type 'float'"),
        ("a:x:int", "is not a 64-bit integer"),
        ("a:True:bool", "a bool is 'true' or 'false'"),
    ],
)
def test_bad_request_parameter_is_one_error_line(value: str, message: str) -> None:
    result = perf("-m", "params", "-u", "127.0.0.1:1", "--request-parameter", value)
    assert result.returncode == 1
    assert message in one_error_line(result)


class _Relay:
    """A TCP relay on loopback that counts the bytes clients send upstream."""

    def __init__(self, port: int) -> None:
        self._upstream = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._sent = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def sent(self) -> int:
        with self._lock:
            return self._sent

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._upstream))
            threading.Thread(
                target=self._pump, args=(client, server, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, False), daemon=True
            ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                if count:
                    with self._lock:
                        self._sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


@pytest.mark.parametrize("algorithm", ["none", "gzip", "deflate"])
@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "stream"])
def test_grpc_compression_shrinks_what_the_client_sends(
    served: RunningServer, algorithm: str, streaming: bool
) -> None:
    relay = _Relay(served.ports["grpc"])
    try:
        before = success_count(served, "identity")
        count = 20
        ok_run(
            "-m",
            "identity",
            "-u",
            relay.url,
            "-i",
            "grpc",
            "--shape",
            "INPUT0:16384",
            "--input-data",
            "zero",
            "--request-count",
            str(count),
            "--grpc-compression-algorithm",
            algorithm,
            *(["--streaming"] if streaming else []),
        )
        assert success_count(served, "identity") - before == count
        raw = count * 16384 * 4  # the zero tensors alone, uncompressed
        if algorithm == "none":
            assert relay.sent > raw
        else:
            # 64 KiB of zeros compress to well under a KiB per request.
            assert relay.sent < raw // 20, relay.sent
    finally:
        relay.close()


def test_grpc_compression_is_refused_over_http_and_unknown() -> None:
    over_http = perf(
        "-m", "identity", "-i", "http", "--grpc-compression-algorithm", "gzip"
    )
    assert over_http.returncode == 1
    assert "needs -i grpc" in one_error_line(over_http)
    unknown = perf(
        "-m", "identity", "-i", "grpc", "--grpc-compression-algorithm", "lz4"
    )
    assert "invalid choice: 'lz4'" in one_error_line(unknown)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("transport_pki"))


@pytest.fixture(scope="module")
def tls_served(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """gRPC over mutual TLS (a client certificate from the CA is required); HTTP
    in clear, for the statistics."""
    repo = tmp_path_factory.mktemp("transport_tls")
    write_model(repo, "identity", IDENTITY, ECHO_MODEL)
    with run_server(
        repo,
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={pki.server_cert}",
        f"--grpc-server-key={pki.server_key}",
        f"--grpc-root-cert={pki.ca_cert}",
        "--grpc-use-ssl-mutual=true",
    ) as server:
        yield server


def _tls_flags(pki: Pki, client_cert: bool = True) -> list[str]:
    flags = ["--ssl-grpc-use-ssl", f"--ssl-grpc-root-certifications-file={pki.ca_cert}"]
    if client_cert:
        flags += [
            f"--ssl-grpc-private-key-file={pki.client_key}",
            f"--ssl-grpc-certificate-chain-file={pki.client_cert}",
        ]
    return flags


@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "stream"])
def test_grpc_tls(tls_served: RunningServer, pki: Pki, streaming: bool) -> None:
    before = success_count(tls_served, "identity")
    ok_run(
        "-m",
        "identity",
        "-u",
        f"localhost:{tls_served.ports['grpc']}",
        "-i",
        "grpc",
        "--shape",
        "INPUT0:4",
        "--request-count",
        "10",
        *_tls_flags(pki),
        *(["--streaming"] if streaming else []),
    )
    assert success_count(tls_served, "identity") - before == 10


@pytest.mark.parametrize(
    "flags", ["plaintext", "no-client-cert"], ids=["plaintext", "no-client-cert"]
)
def test_grpc_tls_port_refuses_other_clients(
    tls_served: RunningServer, pki: Pki, flags: str
) -> None:
    tls = [] if flags == "plaintext" else _tls_flags(pki, client_cert=False)
    result = perf(
        "-m",
        "identity",
        "-u",
        f"localhost:{tls_served.ports['grpc']}",
        "-i",
        "grpc",
        "--request-count",
        "2",
        "--timeout",
        "10",
        *tls,
    )
    one_error_line(result)


def test_grpc_tls_flag_errors(pki: Pki) -> None:
    half = perf(
        "-m",
        "identity",
        "-i",
        "grpc",
        "--ssl-grpc-use-ssl",
        f"--ssl-grpc-private-key-file={pki.client_key}",
    )
    assert "go together" in one_error_line(half)
    missing = perf(
        "-m",
        "identity",
        "-i",
        "grpc",
        "--ssl-grpc-use-ssl",
        "--ssl-grpc-root-certifications-file=/nonexistent/ca.pem",
    )
    assert "cannot read --ssl-grpc-root-certifications-file" in one_error_line(missing)


@pytest.fixture(scope="module")
def https_served(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """HTTP over mutual TLS; gRPC in clear."""
    repo = tmp_path_factory.mktemp("transport_https")
    write_model(repo, "identity", IDENTITY, ECHO_MODEL)
    with run_server(
        repo,
        "--http-use-ssl=true",
        f"--http-server-cert={pki.server_cert}",
        f"--http-server-key={pki.server_key}",
        f"--http-root-cert={pki.ca_cert}",
        "--http-use-ssl-mutual=true",
    ) as server:
        yield server


def _https_successes(server: RunningServer, pki: Pki) -> int:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    conn = http.client.HTTPSConnection(
        "localhost", server.ports["http"], timeout=30, context=context
    )
    try:
        conn.request("GET", "/v2/models/identity/stats")
        stats = json.loads(conn.getresponse().read())["model_stats"]
    finally:
        conn.close()
    return sum(int(v["inference_stats"]["success"]["count"]) for v in stats)


def _https_flags(pki: Pki, client_cert: bool = True) -> list[str]:
    flags = [
        "--ssl-https-verify-peer=1",
        "--ssl-https-verify-host=2",
        f"--ssl-https-ca-certificates-file={pki.ca_cert}",
    ]
    if client_cert:
        flags += [
            f"--ssl-https-client-certificate-file={pki.client_cert}",
            "--ssl-https-client-certificate-type=PEM",
            f"--ssl-https-private-key-file={pki.client_key}",
            "--ssl-https-private-key-type=PEM",
        ]
    return flags


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_https(https_served: RunningServer, pki: Pki, mode: str) -> None:
    before = _https_successes(https_served, pki)
    ok_run(
        "-m",
        "identity",
        "-u",
        f"https://localhost:{https_served.ports['http']}",
        "-i",
        "http",
        "--shape",
        "INPUT0:4096",
        "--request-count",
        "20",
        "--concurrency-range",
        "3",
        f"--{mode}",
        *_https_flags(pki),
    )
    assert _https_successes(https_served, pki) - before == 20


@pytest.mark.parametrize("case", ["plaintext", "no-client-cert", "other-ca"])
def test_https_port_refuses_other_clients(
    https_served: RunningServer, pki: Pki, case: str
) -> None:
    port = https_served.ports["http"]
    args = {
        "plaintext": [f"localhost:{port}"],
        "no-client-cert": [f"https://localhost:{port}", *_https_flags(pki, False)],
        "other-ca": [
            f"https://localhost:{port}",
            f"--ssl-https-ca-certificates-file={pki.rogue_ca_cert}",
        ],
    }[case]
    result = perf(
        "-m",
        "identity",
        "-u",
        *args[:1],
        "--request-count",
        "2",
        "--timeout",
        "10",
        *args[1:],
    )
    one_error_line(result)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_request_intervals(
    served: RunningServer, protocol: str, tmp_path: Path
) -> None:
    # 300 ms, then two at once, repeated: the sends are due at 0, 300, 300, 300 ms.
    # A constant rate of the same average (10/s: 0, 100, 200, 300 ms) or any closed
    # loop sends the second request before 300 ms and fails the check below.
    intervals = tmp_path / "intervals.txt"
    intervals.write_text("300000\n0\n\n0\n")
    csv_file = tmp_path / "perf.csv"
    export = tmp_path / "export.json"
    before = success_count(served, "identity")
    text = ok_run(
        "-m",
        "identity",
        "-u",
        _url(served, protocol),
        "-i",
        protocol,
        "--shape",
        "INPUT0:4",
        "--request-intervals",
        str(intervals),
        "--request-count",
        "4",
        "-f",
        str(csv_file),
        "--profile-export-file",
        str(export),
    )
    assert success_count(served, "identity") - before == 4
    # perf_analyzer's label: three intervals in 0.3 s, 10 requests/s.
    assert "Request Rate: 10, throughput:" in text
    # The settings name the file, not a rate range (perf_analyzer prints none).
    assert "  Request intervals: " in text and "Request rate range" not in text
    header, rows = read_csv(csv_file)
    assert header[0] == "Request Rate" and [r["Request Rate"] for r in rows] == ["10"]
    (experiment,) = json.loads(export.read_text())["experiments"]
    assert experiment["experiment"] == {"mode": "request_rate", "value": 10.0}
    # The window opens before the load starts and a request is never sent before
    # its time: the k-th send comes at least due[k] after the window opened.
    opened = experiment["window_boundaries"][0]
    starts = sorted(r["timestamp"] for r in experiment["requests"])
    due_ms = [0, 300, 300, 300]
    assert len(starts) == 4
    for start, due in zip(starts, due_ms, strict=True):
        assert start - opened >= due * 1_000_000


@pytest.mark.parametrize(
    "content,flags,message",
    [
        ("abc\n", [], "'abc' is not an interval in microseconds"),
        ("-5\n", [], "'-5' is not an interval"),
        ("\n\n", [], "holds no interval"),
        ("0\n0\n", [], "every interval is 0"),
        ("1000\n", ["--concurrency-range", "2"], "--request-intervals and --concu"),
        ("1000\n", ["--request-rate-range", "5"], "--request-intervals and --reque"),
    ],
)
def test_bad_request_intervals_are_one_error_line(
    tmp_path: Path, content: str, flags: list[str], message: str
) -> None:
    intervals = tmp_path / "intervals.txt"
    intervals.write_text(content)
    result = perf(
        "-m",
        "identity",
        "-u",
        "127.0.0.1:1",
        "--request-intervals",
        str(intervals),
        *flags,
    )
    assert result.returncode == 1
    assert message in one_error_line(result)
