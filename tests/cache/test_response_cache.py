"""The response cache (--cache-config local,size=N with response_cache { enable:
true }) end to end on both protocols: a hit returns the first answer without
executing, counts in statistics and metrics like Triton's, honours requested
outputs; different inputs miss, request parameters do not change the key (as in
Triton); a small cache evicts the least recently used entry; decoupled models
cannot enable it; a model enabling it on a server without a cache just executes.

A model's OUTPUT1 is its instance's execution counter, so a hit is told from a miss
by its content, not by timing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import (
    REFERENCE_CMD_ENV,
    RunningServer,
    reference_command,
    run_reference,
    run_server,
)
from testmodels import COUNTING_MODEL

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0", data_type: {dtype}, dims: [ -1 ] }} ]
output [
  {{ name: "OUTPUT0", data_type: {dtype}, dims: [ -1 ] }},
  {{ name: "OUTPUT1", data_type: TYPE_INT64, dims: [ 1 ] }}
]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{extra}
"""

CACHED = "response_cache { enable: true }"


def _add_model(
    repo: Path, name: str, dtype: str = "TYPE_FP32", extra: str = CACHED
) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(
        CONFIG.format(name=name, dtype=dtype, extra=extra)
    )
    (repo / name / "1" / "model.py").write_text(COUNTING_MODEL)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    _add_model(root, "cached")
    _add_model(root, "cached_grpc")
    _add_model(root, "words", dtype="TYPE_STRING")
    _add_model(root, "plain", extra="")
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    with run_server(repo, "--cache-config=local,size=1048576") as running:
        yield running


def _client(server: RunningServer, protocol: str) -> Any:
    if protocol == "grpc":
        return grpcclient.InferenceServerClient(server.grpc_url)
    return httpclient.InferenceServerClient(server.http_url)


def _infer(
    client: Any,
    model: str,
    data: np.ndarray,
    outputs: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    grpc = isinstance(client, grpcclient.InferenceServerClient)
    module: Any = grpcclient if grpc else httpclient
    datatype = "BYTES" if data.dtype == np.object_ else "FP32"
    inp = module.InferInput("INPUT0", list(data.shape), datatype)
    inp.set_data_from_numpy(data)
    requested = [module.InferRequestedOutput(name) for name in outputs or []]
    result = client.infer(
        model, [inp], outputs=requested or None, parameters=parameters
    )
    response = result.get_response(as_json=True) if grpc else result.get_response()
    names = [o["name"] for o in response["outputs"]]
    return {name: result.as_numpy(name) for name in names}


def _stats(client: Any, model: str) -> dict[str, Any]:
    grpc = isinstance(client, grpcclient.InferenceServerClient)
    got = (
        client.get_inference_statistics(model, as_json=True)
        if grpc
        else client.get_inference_statistics(model)
    )
    return dict(got["model_stats"][0])


def _count(stats: dict[str, Any], key: str) -> int:
    return int(stats["inference_stats"][key].get("count", 0))


def _settled_stats(client: Any, model: str, requests: int) -> dict[str, Any]:
    """Statistics once all `requests` answered requests are counted.

    Triton records a cache miss's statistics after the response has left, so a
    query right after the last answer can miss one; waiting for the success count
    keeps the comparison about what is counted, not about when.
    """
    deadline = time.monotonic() + 30.0
    stats = _stats(client, model)
    while _count(stats, "success") < requests and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = _stats(client, model)
    return stats


def _metrics(server: RunningServer) -> str:
    with urllib.request.urlopen(server.metrics_url, timeout=30) as response:
        return str(response.read().decode())


def _metric(text: str, name: str, model: str) -> int | None:
    match = re.search(rf'^{name}{{model="{model}",version="1"}} (\d+)', text, re.M)
    return int(match.group(1)) if match else None


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_hit_returns_first_answer_and_counts(
    server: RunningServer, protocol: str
) -> None:
    model = "cached" if protocol == "http" else "cached_grpc"
    client = _client(server, protocol)
    data = np.array([1.5, 2.5, 3.5], dtype=np.float32)
    first = _infer(client, model, data)
    second = _infer(client, model, data)
    assert first["OUTPUT1"].tolist() == [1]
    np.testing.assert_array_equal(second["OUTPUT0"], data)
    assert second["OUTPUT1"].tolist() == [1]  # not executed again
    stats = _stats(client, model)
    assert _count(stats, "cache_hit") == 1
    assert _count(stats, "cache_miss") == 1
    assert _count(stats, "success") == 2
    assert int(stats["execution_count"]) == 1
    assert int(stats["inference_count"]) == 1
    assert int(stats["inference_stats"]["cache_hit"]["ns"]) > 0
    text = _metrics(server)
    assert _metric(text, "nv_cache_num_hits_per_model", model) == 1
    assert _metric(text, "nv_cache_num_misses_per_model", model) == 1
    assert _metric(text, "nv_cache_hit_duration_per_model", model) is not None
    assert _metric(text, "nv_cache_miss_duration_per_model", model) is not None
    assert _metric(text, "nv_inference_count", model) == 1
    assert _metric(text, "nv_inference_request_success", model) == 2
    client.close()


def test_key_covers_inputs_not_parameters(server: RunningServer) -> None:
    client = _client(server, "http")
    base = np.array([7.0, 8.0], dtype=np.float32)
    first = _infer(client, "cached", base)
    # Other values execute.
    other = _infer(client, "cached", np.array([7.0, 9.0], dtype=np.float32))
    assert other["OUTPUT1"][0] > first["OUTPUT1"][0]
    # Parameters are not part of Triton's key: a hit.
    again = _infer(client, "cached", base, parameters={"custom": "x"})
    assert again["OUTPUT1"].tolist() == first["OUTPUT1"].tolist()
    # Requested outputs are honoured on a hit.
    only = _infer(client, "cached", base, outputs=["OUTPUT1"])
    assert list(only) == ["OUTPUT1"]
    assert only["OUTPUT1"].tolist() == first["OUTPUT1"].tolist()
    client.close()


def test_bytes_inputs(server: RunningServer) -> None:
    client = _client(server, "grpc")
    words = np.array([b"alpha", b"", b"gamma"], dtype=np.object_)
    first = _infer(client, "words", words)
    second = _infer(client, "words", words)
    assert second["OUTPUT0"].tolist() == [b"alpha", b"", b"gamma"]
    assert second["OUTPUT1"].tolist() == first["OUTPUT1"].tolist()
    different = _infer(
        client, "words", np.array([b"alpha", b"", b"gammb"], dtype=object)
    )
    assert different["OUTPUT1"][0] > first["OUTPUT1"][0]
    client.close()


def test_model_without_cache_enabled_executes(server: RunningServer) -> None:
    client = _client(server, "http")
    data = np.array([1.0], dtype=np.float32)
    assert _infer(client, "plain", data)["OUTPUT1"].tolist() == [1]
    assert _infer(client, "plain", data)["OUTPUT1"].tolist() == [2]
    stats = _stats(client, "plain")
    assert _count(stats, "cache_hit") == 0 and _count(stats, "cache_miss") == 0
    # Triton exports the cache families only for models that use the cache.
    assert _metric(_metrics(server), "nv_cache_num_hits_per_model", "plain") is None
    client.close()


def test_small_cache_evicts_least_recently_used(tmp_path: Path) -> None:
    _add_model(tmp_path, "cached")
    # Room for two entries of 64 floats (256 + 8 bytes of outputs, plus overhead),
    # not three.
    with run_server(tmp_path, "--cache-config=local,size=900") as srv:
        client = _client(srv, "http")
        a, b, c = (np.full(64, v, dtype=np.float32) for v in (1.0, 2.0, 3.0))
        assert _infer(client, "cached", a)["OUTPUT1"].tolist() == [1]
        assert _infer(client, "cached", b)["OUTPUT1"].tolist() == [2]
        assert _infer(client, "cached", a)["OUTPUT1"].tolist() == [1]  # hit; a is MRU
        assert _infer(client, "cached", c)["OUTPUT1"].tolist() == [3]  # evicts b
        assert _infer(client, "cached", a)["OUTPUT1"].tolist() == [1]
        assert _infer(client, "cached", b)["OUTPUT1"].tolist() == [4]  # was evicted
        # An answer bigger than the whole cache is never cached.
        big = np.zeros(1024, dtype=np.float32)
        assert _infer(client, "cached", big)["OUTPUT1"].tolist() == [5]
        assert _infer(client, "cached", big)["OUTPUT1"].tolist() == [6]
        client.close()


def test_no_server_cache_means_no_caching(tmp_path: Path) -> None:
    _add_model(tmp_path, "cached")
    with run_server(tmp_path) as srv:  # the model enables it, the server has none
        client = _client(srv, "grpc")
        data = np.array([1.0], dtype=np.float32)
        assert _infer(client, "cached", data)["OUTPUT1"].tolist() == [1]
        assert _infer(client, "cached", data)["OUTPUT1"].tolist() == [2]
        client.close()


def test_decoupled_model_cannot_enable_cache(tmp_path: Path) -> None:
    _add_model(
        tmp_path,
        "stream",
        extra=CACHED + "\nmodel_transaction_policy { decoupled: true }",
    )
    with run_server(
        tmp_path, "--cache-config=local,size=1048576", expect_ready=False
    ) as srv:
        srv.process.wait(timeout=60)
    assert srv.process.returncode == 1
    assert (
        "Response Cache does not currently support model stream with 'decoupled' "
        "transaction policy. Please disable the response cache." in srv.log_text()
    )


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (
            "--cache-config=local",
            'Bad option: "--cache-config".\nNo cache specified. --cache-config option '
            "format is <cache name>,<setting>=<value>. Got local",
        ),
        (
            "--cache-config=local,foo=1",
            "error: creating server: Invalid argument - Failed to initialize "
            "LocalCache: config didn't contain a valid 'size' field.",
        ),
    ],
)
def test_flag_errors(flag: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tritonx", "--model-repository=/nonexistent", flag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert message in result.stderr


@pytest.mark.skipif(reference_command() is None, reason=f"{REFERENCE_CMD_ENV} unset")
def test_statistics_shape_matches_reference(repo: Path, server: RunningServer) -> None:
    """The same traffic gives the same cache counts and metric families."""

    def traffic(srv: RunningServer) -> tuple[dict[str, Any], str]:
        client = _client(srv, "http")
        data = np.array([42.0, 43.0], dtype=np.float32)
        sent = (None, None, {"custom": "x"})
        for parameters in sent:
            _infer(client, "cached", data, parameters=parameters)
        stats = _settled_stats(client, "cached", len(sent))
        client.close()
        return stats, _metrics(srv)

    with run_reference([repo], "--cache-config=local,size=1048576") as ref:
        ref_stats, ref_metrics = traffic(ref)
    with run_server(repo, "--cache-config=local,size=1048576") as fresh:
        ours, our_metrics = traffic(fresh)
    for key in ("cache_hit", "cache_miss", "success"):
        assert _count(ours, key) == _count(ref_stats, key), key
        assert set(ours["inference_stats"][key]) == set(
            ref_stats["inference_stats"][key]
        )
    assert ours["execution_count"] == ref_stats["execution_count"]
    assert ours["inference_count"] == ref_stats["inference_count"]
    for name in (
        "nv_cache_num_hits_per_model",
        "nv_cache_num_misses_per_model",
        "nv_cache_hit_duration_per_model",
        "nv_cache_miss_duration_per_model",
    ):
        for text in (ref_metrics, our_metrics):
            assert f"# TYPE {name} counter" in text, name
        assert _metric(our_metrics, name, "cached") is not None
        if "num" in name:
            assert _metric(our_metrics, name, "cached") == _metric(
                ref_metrics, name, "cached"
            )
