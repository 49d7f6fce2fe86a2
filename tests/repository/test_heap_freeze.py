"""The standalone server freezes its start-up heap (``tritonx.heap``), thaws it at
an unload, so that the unloaded model's reference cycles are still collected, and
freezes it again once the model is gone. Observed from inside the server: a
``collector`` model runs a full collection and reports the collector's
frozen-object count and whether the ``cyclic`` model's instance (kept alive only by
a cycle) has been collected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import run_server
from testmodels import write_model

CYCLIC_CONFIG = """
name: "cyclic"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_INT64 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT64 dims: [ 1 ] } ]
parameters { key: "marker" value { string_value: "MARKER" } }
"""
# Its instance references itself: only the cyclic collector can free it.
CYCLIC_MODEL = """
import json
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.marker = config["parameters"]["marker"]["string_value"]
        self.me = self

    def __del__(self):
        with open(self.marker, "w") as f:
            f.write("collected")

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
"""
COLLECTOR_CONFIG = CYCLIC_CONFIG.replace('"cyclic"', '"collector"').replace(
    "dims: [ 1 ] } ]\nparameters", "dims: [ 2 ] } ]\nparameters"
)
# OUTPUT0 = [frozen objects, whether the marker exists] after a full collection.
COLLECTOR_MODEL = """
import gc
import json
import os
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.marker = config["parameters"]["marker"]["string_value"]

    def execute(self, requests):
        gc.collect()
        state = np.array(
            [gc.get_freeze_count(), os.path.exists(self.marker)], dtype=np.int64)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", state)])
                for _ in requests]
"""


def collect(client: httpclient.InferenceServerClient) -> tuple[int, bool]:
    value = httpclient.InferInput("INPUT0", [1], "INT64")
    value.set_data_from_numpy(np.zeros(1, dtype=np.int64))
    frozen, collected = client.infer("collector", [value]).as_numpy("OUTPUT0")
    return int(frozen), bool(collected)


def unloaded(client: httpclient.InferenceServerClient) -> bool:
    index = client.get_model_repository_index()
    return any(m["name"] == "cyclic" and m.get("reason") == "unloaded" for m in index)


def test_an_unload_thaws_then_refreezes_the_heap(tmp_path: Path) -> None:
    marker = tmp_path / "collected"
    repo = tmp_path / "repo"
    write_model(
        repo, "cyclic", CYCLIC_CONFIG.replace("MARKER", str(marker)), CYCLIC_MODEL
    )
    write_model(
        repo,
        "collector",
        COLLECTOR_CONFIG.replace("MARKER", str(marker)),
        COLLECTOR_MODEL,
    )
    with run_server(
        repo,
        "--model-control-mode=explicit",
        "--load-model=cyclic",
        "--load-model=collector",
    ) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        frozen, collected = collect(client)
        assert frozen > 0, "the start-up heap is not frozen"
        assert not collected
        client.unload_model("cyclic")
        # The unload returns once the model stops serving; it is retired after.
        wait_until(lambda: unloaded(client), "the model unloaded")
        # Thawed, the instance's cycle is collected; once the retired model is
        # gone the heap is frozen again (checked a second after the unload).
        wait_until(lambda: collect(client)[1], "the unloaded model's cycle collected")
        wait_until(lambda: collect(client)[0] > 0, "the heap frozen again")


def test_a_stub_process_freezes_its_model(tmp_path: Path) -> None:
    """A model in a stub process (EXECUTION_MODE "process") lives as long as its
    process: the stub freezes its heap once the model is initialized (and the
    zygote the objects every stub inherits)."""
    repo = tmp_path / "repo"
    config = COLLECTOR_CONFIG.replace("MARKER", str(tmp_path / "unused"))
    config += 'parameters { key: "EXECUTION_MODE" value { string_value: "process" } }\n'
    write_model(repo, "collector", config, COLLECTOR_MODEL)
    with run_server(repo) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        frozen, _ = collect(client)
        assert frozen > 0, "the stub's heap is not frozen"
