"""The response cache on an ensemble (``response_cache { enable: true }`` in the
ensemble's config), as Triton caches one: the ensemble as a whole is looked up, a hit
runs no step, a miss caches the ensemble's response; statistics count hits and
misses on the ensemble and executions on the composing model. Compared with Triton
2.51 when TRITONX_REFERENCE_CMD is set, in the local cache and (tritonx) in Redis.

Kept different: a request naming some of the outputs. Triton caches the response it
computed for that request, so a later hit asking for every output, or another one,
gets only the first request's outputs. tritonx computes and caches every output of
a cached ensemble and filters per request, so each hit answers what it asks for.

Triton's L0_response_cache ensemble cases (test_where_the_cache_answers): which of
an ensemble and its composing model has the cache on decides where hits and misses
are counted (a hit on the ensemble runs no step, so its composing model sees
nothing), and a response too big for the cache is a miss every time, logged as a
failed insertion."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from redisutil import REDIS_SERVER, redis_server, wait_for_key_count
from serverutil import differential, reference_command, run_either
from testmodels import COUNTING_MODEL

COUNTER_CONFIG = """
name: "counter"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [
  { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] },
  { name: "OUTPUT1", data_type: TYPE_INT64, dims: [ 1 ] }
]
"""

ENSEMBLE_CONFIG = """
name: "ens"
platform: "ensemble"
max_batch_size: 0
input [ { name: "X", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [
  { name: "Y", data_type: TYPE_FP32, dims: [ -1 ] },
  { name: "N", data_type: TYPE_INT64, dims: [ 1 ] }
]
response_cache { enable: true }
ensemble_scheduling { step [ {
  model_name: "counter"
  model_version: -1
  input_map { key: "INPUT0" value: "X" }
  output_map [ { key: "OUTPUT0" value: "Y" }, { key: "OUTPUT1" value: "N" } ]
} ] }
"""

CACHE = "--cache-config=local,size=1048576"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ensemble_cache")
    (root / "counter" / "1").mkdir(parents=True)
    (root / "counter" / "config.pbtxt").write_text(COUNTER_CONFIG)
    (root / "counter" / "1" / "model.py").write_text(COUNTING_MODEL)
    (root / "ens" / "1").mkdir(parents=True)
    (root / "ens" / "config.pbtxt").write_text(ENSEMBLE_CONFIG)
    return root


def _infer(client: Any, values: list[float], outputs: list[str] | None = None) -> dict:
    data = np.array(values, dtype=np.float32)
    inp = httpclient.InferInput("X", list(data.shape), "FP32")
    inp.set_data_from_numpy(data)
    requested = [httpclient.InferRequestedOutput(n) for n in outputs or []]
    result = client.infer("ens", [inp], outputs=requested or None)
    return {
        o["name"]: result.as_numpy(o["name"]).tolist()
        for o in result.get_response()["outputs"]
    }


def _counts(client: Any, model: str) -> dict[str, int]:
    stats = client.get_inference_statistics(model)["model_stats"][0]
    counts = {k: v["count"] for k, v in stats["inference_stats"].items()}
    counts["executions"] = stats["execution_count"]
    counts["inferences"] = stats["inference_count"]
    return counts


def _settled_counts(client: Any) -> dict[str, dict[str, int]]:
    """The statistics once every request of the scenario is in them. Triton 2.51
    records a request's statistics when it releases the request, which can be after
    the client has its response (CI saw the last execution missing), so read until
    the ensemble counts every request and its composing model every miss."""
    deadline = time.monotonic() + 10
    while True:
        counts = {m: _counts(client, m) for m in ("ens", "counter")}
        ens, counter = counts["ens"], counts["counter"]
        settled = (
            ens["success"] == len(REQUESTS)
            and counter["executions"] == ens["cache_miss"] == ens["executions"]
        )
        if settled or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


# The requests of the scenario (inputs, outputs asked for) and how many entries
# the cache holds after each: a miss adds one, a hit none.
REQUESTS: list[tuple[list[float], list[str] | None, int]] = [
    ([1.0], None, 1),  # miss
    ([1.0], None, 1),  # hit: the first execution's count
    ([2.0], None, 2),  # miss
    ([3.0], ["Y"], 3),  # miss, one output asked for
    ([3.0], None, 3),  # hit
    ([3.0], ["N"], 3),  # hit
]


def _scenario(
    repo: Path, flags: list[str], settle: Callable[[int], None] | None = None
) -> Any:
    """``settle(entries)`` after each request: until the cache holds that many
    (Redis is written behind the response)."""

    def run(which: str) -> dict[str, Any]:
        with run_either(which, repo, *flags) as server:
            client = httpclient.InferenceServerClient(server.http_url)
            answers = []
            for values, outputs, entries in REQUESTS:
                answers.append(_infer(client, values, outputs))
                if settle is not None:
                    settle(entries)
            counts = _settled_counts(client)
            client.close()
        return {"answers": answers, "counts": counts}

    return run


def _check(results: dict[str, Any]) -> None:
    ours = results["tritonx"]
    assert ours["answers"] == [
        {"Y": [1.0], "N": [1]},
        {"Y": [1.0], "N": [1]},
        {"Y": [2.0], "N": [2]},
        {"Y": [3.0]},
        {"Y": [3.0], "N": [3]},
        {"N": [3]},
    ]
    ens, counter = ours["counts"]["ens"], ours["counts"]["counter"]
    assert (ens["cache_hit"], ens["cache_miss"], ens["success"]) == (3, 3, 6)
    assert (ens["executions"], counter["executions"]) == (3, 3)
    if "reference" in results:
        theirs = results["reference"]
        # Same statistics, on the ensemble and on its composing model.
        assert theirs["counts"] == ours["counts"]
        # Same answers, except after a request that named one output (module doc).
        assert theirs["answers"][:4] == ours["answers"][:4]
        assert theirs["answers"][4:] == [{"Y": [3.0]}, {"Y": [3.0]}]


def test_ensemble_cache_local(repo: Path) -> None:
    scenario = _scenario(repo, [CACHE])
    results = {"tritonx": scenario("tritonx")}
    if reference_command() is not None:
        results["reference"] = scenario("reference")
    _check(results)


@pytest.mark.skipif(REDIS_SERVER is None, reason="no redis-server")
def test_ensemble_cache_in_redis(repo: Path) -> None:
    redis = pytest.importorskip("redis")
    with redis_server() as (port, _):
        flags = [
            "--cache-config=redis,host=127.0.0.1",
            f"--cache-config=redis,port={port}",
        ]
        store = redis.Redis(port=port)
        settle = functools.partial(wait_for_key_count, store)
        _check({"tritonx": _scenario(repo, flags, settle)("tritonx")})


# L0_response_cache's ensemble cases.
SMALL_CACHE = "--cache-config=local,size=10840"
# Two requests of 4,096 floats: each response (16 KiB) is larger than the cache.
LARGE = 4096
CACHED = "response_cache { enable: true }"


def write_repo(root: Path, ensemble_cached: bool, counter_cached: bool) -> Path:
    ensemble = ENSEMBLE_CONFIG
    if not ensemble_cached:
        ensemble = ensemble.replace(CACHED, "")
    counter = COUNTER_CONFIG + (CACHED if counter_cached else "")
    (root / "counter" / "1").mkdir(parents=True)
    (root / "counter" / "config.pbtxt").write_text(counter)
    (root / "counter" / "1" / "model.py").write_text(COUNTING_MODEL)
    (root / "ens" / "1").mkdir(parents=True)
    (root / "ens" / "config.pbtxt").write_text(ensemble)
    return root


def infer_ones(client: Any, size: int) -> list[Any]:
    data = np.ones(size, dtype=np.float32)
    tensor = httpclient.InferInput("X", [size], "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer("ens", [tensor])
    return [float(result.as_numpy("Y").sum()), result.as_numpy("N").tolist()]


def cache_counts(client: Any, model: str) -> dict[str, int]:
    stats = client.get_inference_statistics(model)["model_stats"][0]
    inference = stats["inference_stats"]
    return {
        "success": inference["success"]["count"],
        "cache_hit": inference["cache_hit"]["count"],
        "cache_miss": inference["cache_miss"]["count"],
        "executions": stats["execution_count"],
    }


def settled_counts(client: Any) -> dict[str, dict[str, int]]:
    """Both models' counts once the ensemble counts both requests and three reads
    in a row agree (Triton 2.51 records statistics after the responses)."""
    deadline = time.monotonic() + 10
    reads: list[dict[str, dict[str, int]]] = []
    while True:
        reads = [*reads[-2:], {m: cache_counts(client, m) for m in ("ens", "counter")}]
        settled = len(reads) == 3 and reads[0] == reads[1] == reads[2]
        if (
            settled and reads[-1]["ens"]["success"] == 2
        ) or time.monotonic() > deadline:
            return reads[-1]
        time.sleep(0.1)


def two_requests(kind: str, repo: Path, size: int) -> dict[str, Any]:
    with run_either(kind, repo, SMALL_CACHE) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            answers = [infer_ones(client, size), infer_ones(client, size)]
            counts = settled_counts(client)
        finally:
            client.close()
    # Read once the server is gone: tritonx writes core lines from a log thread.
    failed_inserts = server.log_text().count("Failed to insert key [")
    return {"answers": answers, "counts": counts, "failed inserts": failed_inserts}


def counted(success: int, hits: int, misses: int, executions: int) -> dict[str, int]:
    return {
        "success": success,
        "cache_hit": hits,
        "cache_miss": misses,
        "executions": executions,
    }


# (ensemble cached, composing model cached, input size): the answers (the sum of
# Y, the execution that made N) and both models' counts for two equal requests.
CASES: dict[str, tuple[tuple[bool, bool, int], dict[str, Any]]] = {
    # test_ensemble_composing_model_cache_enabled: the step's cache answers.
    "composing_model_only": (
        (False, True, 1),
        {
            "answers": [[1.0, [1]], [1.0, [1]]],
            "counts": {
                "ens": counted(2, 0, 0, 2),
                "counter": counted(2, 1, 1, 1),
            },
            "failed inserts": 0,
        },
    ),
    # test_ensemble_all_models_cache_enabled: the ensemble's hit runs no step.
    "ensemble_and_composing_model": (
        (True, True, 1),
        {
            "answers": [[1.0, [1]], [1.0, [1]]],
            "counts": {
                "ens": counted(2, 1, 1, 1),
                "counter": counted(1, 0, 1, 1),
            },
            "failed inserts": 0,
        },
    ),
    # test_ensemble_cache_insertion_failure: too big to cache, two misses.
    "response_larger_than_the_cache": (
        (True, False, LARGE),
        {
            "answers": [[float(LARGE), [1]], [float(LARGE), [2]]],
            "counts": {
                "ens": counted(2, 0, 2, 2),
                "counter": counted(2, 0, 0, 2),
            },
            "failed inserts": 2,
        },
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_where_the_cache_answers(tmp_path: Path, case: str) -> None:
    (ensemble_cached, counter_cached, size), expected = CASES[case]
    repo = write_repo(tmp_path / "repo", ensemble_cached, counter_cached)
    assert differential(lambda kind: two_requests(kind, repo, size)) == expected


def ensemble_state(kind: str, repo: Path) -> dict[str, Any]:
    flags = (SMALL_CACHE, "--exit-on-error=false", "--strict-readiness=false")
    with run_either(kind, repo, *flags) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            index = client.get_model_repository_index()
        finally:
            client.close()
    return {m["name"]: (m.get("state"), m.get("reason")) for m in index}


REFUSED = (
    "Invalid argument: Response Cache does not currently support model ens with "
    "'decoupled' transaction policy. Please disable the response cache."
)


# Which config says decoupled, and the ensemble's state and reason in the index.
@pytest.mark.parametrize(
    ("decoupled", "state"),
    [
        # Refused when its config is read: no version is tried (no state).
        ("ens", (None, None)),
        # Decoupled by its step: its version fails to load.
        ("counter", ("UNAVAILABLE", REFUSED)),
    ],
)
def test_the_cache_refuses_a_decoupled_ensemble(
    tmp_path: Path, decoupled: str, state: tuple[Any, Any]
) -> None:
    # L0_response_cache's ensemble_cache_decoupled and
    # ensemble_cache_composing_decoupled.
    repo = write_repo(tmp_path / "repo", True, False)
    config = repo / decoupled / "config.pbtxt"
    config.write_text(
        config.read_text() + "\nmodel_transaction_policy { decoupled: true }\n"
    )
    seen = differential(lambda kind: ensemble_state(kind, repo))
    assert seen["ens"] == state
    assert seen["counter"] == ("READY", None)
