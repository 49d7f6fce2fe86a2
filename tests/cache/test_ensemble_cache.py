"""The response cache on an ensemble (``response_cache { enable: true }`` in the
ensemble's config), as Triton caches one: the ensemble as a whole is looked up, a hit
runs no step, a miss caches the ensemble's response; statistics count hits and
misses on the ensemble and executions on the composing model. Compared with Triton
2.51 when TRITONX_REFERENCE_CMD is set, in the local cache and (tritonx) in Redis.

Kept different: a request naming some of the outputs. Triton caches the response it
computed for that request, so a later hit asking for every output, or another one,
gets only the first request's outputs. tritonx computes and caches every output of
a cached ensemble and filters per request, so each hit answers what it asks for."""

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
from serverutil import reference_command, run_either
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
