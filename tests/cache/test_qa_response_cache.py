"""The response cache's older flag, after Triton's L0_response_cache QA, as
differential tests against Triton 2.51: ``--response-cache-byte-size`` alone still
gives a local cache (a repeated request is a hit), and together with
``--cache-config`` it stops the start with Triton's words; a response larger than
the cache is a miss every time, each failed insertion logged as Triton logs it.

(The QA's redis, decoupled and ensemble cases are in test_redis_cache.py,
test_response_cache.py and test_ensemble_cache.py; its memory-growth run is a perf
run and is not ported.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import differential, run_either, run_server
from testmodels import write_model

CONFIG = """
name: "cached"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
response_cache { enable: true }
"""

# OUTPUT0 = INPUT0 + the number of executions so far: a hit repeats an answer.
COUNTING = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.count = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.count += 1
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = (data + self.count).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out)]))
        return responses
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_response_cache")
    write_model(root, "cached", CONFIG, COUNTING)
    # Any length: a long input makes a response larger than a small cache.
    write_model(
        root,
        "cached_any",
        CONFIG.replace('"cached"', '"cached_any"').replace(
            "dims: [ 1 ]", "dims: [ -1 ]"
        ),
        COUNTING,
    )
    return root


def cache_counts(client: Any, model: str) -> tuple[int, int, int]:
    """(successes, cache hits, cache misses) of ``model``."""
    stats = client.get_inference_statistics(model)["model_stats"][0]
    infer = stats["inference_stats"]
    return (
        int(infer["success"]["count"]),
        int(infer["cache_hit"]["count"]),
        int(infer["cache_miss"]["count"]),
    )


def test_deprecated_byte_size_flag_gives_a_cache(repo: Path) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, repo, "--response-cache-byte-size=8192") as server:
            client = httpclient.InferenceServerClient(server.http_url)
            outputs = []
            for value in (10.0, 10.0, 20.0):
                tensor = httpclient.InferInput("INPUT0", [1], "FP32")
                tensor.set_data_from_numpy(np.array([value], np.float32))
                result = client.infer("cached", [tensor])
                outputs.append(float(result.as_numpy("OUTPUT0")[0]))

            def counts() -> tuple[int, int, int]:
                return cache_counts(client, "cached")

            wait_until(lambda: counts()[0] == 3, "3 successes")
            seen = {"outputs": outputs, "counts": counts()}
            client.close()
            return seen

    seen = differential(scenario)
    # The second request repeats the first answer (a hit); the third executes.
    assert seen["outputs"] == [11.0, 11.0, 22.0]
    assert seen["counts"] == (3, 1, 2)


def _start_error(kind: str, repo: Path, *args: str) -> str:
    if kind == "reference":
        try:
            with run_either(kind, repo, *args):
                return "started"
        except RuntimeError as error:
            log = str(error)
    else:
        with run_server(repo, *args, expect_ready=False) as server:
            server.process.wait(timeout=60)
            log = server.log_text()
    match = re.search(r"Incompatible flags[^\n]*", log)
    return match.group(0).strip() if match else log


def test_both_cache_flags_stop_the_start(repo: Path) -> None:
    args = ("--response-cache-byte-size=12345", "--cache-config=local,size=67890")
    seen = differential(lambda kind: {"error": _start_error(kind, repo, *args)})
    assert seen["error"].startswith(
        "Incompatible flags --response-cache-byte-size and --cache-config"
    ), seen["error"]


def test_a_response_larger_than_the_cache_is_a_logged_miss(repo: Path) -> None:
    # L0_response_cache's insertion failure on a model: 4,096 floats (16 KiB) in
    # a cache of 8 KiB. Each request executes; each failed insert is logged.
    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, repo, "--cache-config=local,size=8192") as server:
            client = httpclient.InferenceServerClient(server.http_url)
            firsts = []
            for _ in range(2):
                tensor = httpclient.InferInput("INPUT0", [4096], "FP32")
                tensor.set_data_from_numpy(np.zeros(4096, np.float32))
                result = client.infer("cached_any", [tensor])
                firsts.append(float(result.as_numpy("OUTPUT0")[0]))

            def counts() -> tuple[int, int, int]:
                return cache_counts(client, "cached_any")

            # Triton 2.51 records the success after the miss and the response.
            wait_until(lambda: counts() == (2, 0, 2), "2 successes, 2 misses")
            settled = counts()
            client.close()
        # Read once the server is gone: tritonx writes core lines from a log thread.
        failed = re.findall(
            r'E\d{4} [^]]+\] "Failed to insert key \[\d+\] into response cache: '
            r"Requested byte_size: \d+ is greater than total cache size: 8192",
            server.log_text(),
        )
        return {"outputs": firsts, "counts": settled, "failed inserts": len(failed)}

    seen = differential(scenario)
    assert seen == {"outputs": [1.0, 2.0], "counts": (2, 0, 2), "failed inserts": 2}
