"""NVIDIA perf_analyzer's other ways of moving tensors and pacing requests.

test_perf_analyzer_modes.py covers its load modes; here the rest a Triton user
reaches for: system shared memory for inputs and outputs (over HTTP and gRPC, the
outputs checked by perf_analyzer itself against a data file's ``validation_data``),
a BLS model with ``--bls-composing-models``, a request schedule from
``--request-intervals``, and TLS on both protocols (server-side and mutual). Each case
checks what the server saw or what perf_analyzer verified, not only its exit status.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from perfutil import IDENTITY, success_count
from serverutil import SHORT_MEASUREMENT, RunningServer, run_perf_analyzer, run_server
from test_perf_analyzer import perf_analyzer
from testmodels import ECHO_MODEL, write_model
from tlsutil import Pki, make_pki

pytestmark = pytest.mark.skipif(
    perf_analyzer() is None, reason="perf_analyzer not found ($PERF_ANALYZER or PATH)"
)

ELEMENTS = 16

# The inputs the tests send; the model refuses any other.
AFFINE_ROWS = [[float(i + k) for i in range(ELEMENTS)] for k in (0, 100)]

# OUTPUT0 = 2 * INPUT0 + 1: an output that cannot be mistaken for the input.
AFFINE = f"""
name: "affine"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ {ELEMENTS} ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ {ELEMENTS} ] }} ]
dynamic_batching {{ }}
"""
AFFINE_MODEL = f"""
import triton_python_backend_utils as pb_utils

ROWS = {AFFINE_ROWS!r}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            if any(row not in ROWS for row in x.tolist()):
                raise pb_utils.TritonModelException("unexpected input")
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x * 2 + 1)]))
        return responses
"""

# Forwards each request to "identity" through BLS.
FORWARD = """
name: "forward"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""
FORWARD_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            inner = pb_utils.InferenceRequest(
                model_name="identity",
                requested_output_names=["OUTPUT0"],
                inputs=[pb_utils.get_input_tensor_by_name(request, "INPUT0")],
            ).exec()
            if inner.has_error():
                raise pb_utils.TritonModelException(inner.error().message())
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.get_output_tensor_by_name(inner, "OUTPUT0")]))
        return responses
"""


def _repo(root: Path) -> Path:
    write_model(root, "identity", IDENTITY, ECHO_MODEL)
    write_model(root, "affine", AFFINE, AFFINE_MODEL)
    write_model(root, "forward", FORWARD, FORWARD_MODEL)
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(_repo(tmp_path_factory.mktemp("pa_io"))) as server:
        yield server


def run_pa(url: str, protocol: str, *args: str) -> subprocess.CompletedProcess[str]:
    binary = perf_analyzer()
    assert binary is not None
    return run_perf_analyzer(
        [binary, "-u", url, "-i", protocol, *SHORT_MEASUREMENT, *args]
    )


def drive(url: str, protocol: str, *args: str) -> str:
    """One perf_analyzer run that must succeed without an error; its output."""
    result = run_pa(url, protocol, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Throughput:" in output, output
    assert "error" not in output.lower(), output
    return output


def get_json(port: int, path: str, context: ssl.SSLContext | None = None) -> Any:
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    else:
        conn = http.client.HTTPSConnection(
            "localhost", port, timeout=30, context=context
        )
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _url(server: RunningServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def affine_data(
    path: Path, *, expected_offset: float = 1.0, validation: bool = True
) -> Path:
    """AFFINE_ROWS as perf_analyzer input data and, with ``validation``, the outputs
    the affine model must give for them."""
    data: dict[str, Any] = {"data": [{"INPUT0": row} for row in AFFINE_ROWS]}
    if validation:
        data["validation_data"] = [
            {"OUTPUT0": [2 * v + expected_offset for v in row]} for row in AFFINE_ROWS
        ]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_outputs_validated(
    served: RunningServer, tmp_path: Path, protocol: str
) -> None:
    drive(
        _url(served, protocol),
        protocol,
        "-m",
        "affine",
        "--input-data",
        str(affine_data(tmp_path / "data.json")),
    )


def test_validation_catches_a_wrong_output(
    served: RunningServer, tmp_path: Path
) -> None:
    # The check above can fail: outputs that differ from validation_data stop the run.
    result = run_pa(
        served.grpc_url,
        "grpc",
        "-m",
        "affine",
        "--input-data",
        str(affine_data(tmp_path / "wrong.json", expected_offset=2.0)),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "output doesn't match expected output" in output.lower(), output


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("outputs_in_shm", [True, False], ids=["in-out", "in-only"])
def test_system_shared_memory(
    served: RunningServer, tmp_path: Path, protocol: str, outputs_in_shm: bool
) -> None:
    # The model fails a request whose input is not one of the data file's rows, so a
    # clean run proves the server read the regions perf_analyzer wrote. (perf_analyzer
    # cannot check outputs it reads from shared memory: with validation_data it
    # reports "Output size doesn't match expected size" against Triton 2.51 too.)
    before = success_count(served, "affine")
    extra = ["--output-shared-memory-size", str(ELEMENTS * 4)] if outputs_in_shm else []
    drive(
        _url(served, protocol),
        protocol,
        "-m",
        "affine",
        "--shared-memory",
        "system",
        *extra,
        "--input-data",
        str(affine_data(tmp_path / "data.json", validation=False)),
    )
    assert success_count(served, "affine") > before
    # perf_analyzer unregisters its regions at the end of the run.
    assert get_json(served.ports["http"], "/v2/systemsharedmemory/status") == []


def test_bls_composing_models(served: RunningServer) -> None:
    before = success_count(served, "identity")
    output = drive(
        served.grpc_url,
        "grpc",
        "-m",
        "forward",
        "--shape",
        "INPUT0:8",
        "--bls-composing-models",
        "identity",
        "-v",
    )
    composing = output.split("Composing models:", 1)[1]
    assert "identity, version: 1" in composing, output
    assert "Successful request count:" in composing, output
    assert success_count(served, "identity") > before


def test_request_intervals_file(served: RunningServer, tmp_path: Path) -> None:
    schedule = tmp_path / "intervals.txt"
    schedule.write_text("\n".join(["2000", "5000", "1000"] * 20) + "\n")
    before = success_count(served, "identity")
    drive(
        served.http_url,
        "http",
        "-m",
        "identity",
        "--shape",
        "INPUT0:16",
        "--request-intervals",
        str(schedule),
    )
    assert success_count(served, "identity") > before


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pa_pki"))


@pytest.fixture(scope="module", params=[False, True], ids=["tls", "mutual-tls"])
def tls_served(
    request: pytest.FixtureRequest,
    pki: Pki,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, bool]]:
    mutual: bool = request.param
    flags = []
    for protocol in ("grpc", "http"):
        flags += [
            f"--{protocol}-use-ssl=true",
            f"--{protocol}-server-cert={pki.server_cert}",
            f"--{protocol}-server-key={pki.server_key}",
            f"--{protocol}-root-cert={pki.ca_cert}",
            f"--{protocol}-use-ssl-mutual={str(mutual).lower()}",
        ]
    repo = tmp_path_factory.mktemp("pa_tls")
    write_model(repo, "identity", IDENTITY, ECHO_MODEL)
    with run_server(repo, *flags) as server:
        yield server, mutual


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tls(tls_served: tuple[RunningServer, bool], pki: Pki, protocol: str) -> None:
    server, mutual = tls_served
    if protocol == "grpc":
        tls = [
            "--ssl-grpc-use-ssl",
            f"--ssl-grpc-root-certifications-file={pki.ca_cert}",
        ]
        if mutual:
            tls += [
                f"--ssl-grpc-private-key-file={pki.client_key}",
                f"--ssl-grpc-certificate-chain-file={pki.client_cert}",
            ]
        url = f"localhost:{server.ports['grpc']}"
    else:
        tls = [
            "--ssl-https-verify-peer=1",
            "--ssl-https-verify-host=2",
            f"--ssl-https-ca-certificates-file={pki.ca_cert}",
        ]
        if mutual:
            tls += [
                f"--ssl-https-client-certificate-file={pki.client_cert}",
                "--ssl-https-client-certificate-type=PEM",
                f"--ssl-https-private-key-file={pki.client_key}",
                "--ssl-https-private-key-type=PEM",
            ]
        url = f"https://localhost:{server.ports['http']}"
    before = _successes_over_tls(server, pki)
    drive(url, protocol, "-m", "identity", "--shape", "INPUT0:16", *tls)
    assert _successes_over_tls(server, pki) > before


def _successes_over_tls(server: RunningServer, pki: Pki) -> int:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    stats = get_json(server.ports["http"], "/v2/models/identity/stats", context)
    return sum(
        int(v["inference_stats"]["success"]["count"]) for v in stats["model_stats"]
    )
