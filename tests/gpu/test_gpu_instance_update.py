"""In-place instance updates with KIND_GPU groups (Triton's L0_model_update
test_gpu_instance_update and test_gpu_cpu_instance_update): GPU and CPU
instances are told apart by their signature, so a reload adds and removes only
the instances whose kind's count changed, and every added GPU instance gets its
device and a CUDA stream of its own."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

# Appends "init <kind> <stream>" / "fini <kind>" to <markers>/events.
MODEL = """
import json
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.path = os.path.join(
            config["parameters"]["markers"]["string_value"], "events")
        self.kind = args["model_instance_kind"]
        with open(self.path, "a") as f:
            f.write(f"init {self.kind} {args['tritonx_cuda_stream']}\\n")

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
                    "OUTPUT0",
                    pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
                for r in requests]

    def finalize(self):
        with open(self.path, "a") as f:
            f.write(f"fini {self.kind}\\n")
"""


def _config(markers: Path, groups: str) -> str:
    return f"""
name: "m"
backend: "python"
max_batch_size: 8
parameters {{ key: "markers" value: {{ string_value: "{markers}" }} }}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {groups} ]
"""


def _live(markers: Path, expected: int) -> dict[str, object]:
    """Instances initialized and finalized per kind once ``expected`` are live
    (finalizations come after the load returns), and the streams handed out."""
    deadline = time.monotonic() + 30
    while True:
        lines = (markers / "events").read_text().splitlines()
        inits = [line.split() for line in lines if line.startswith("init")]
        finis = [line.split() for line in lines if line.startswith("fini")]
        if len(inits) - len(finis) <= expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return {
        "init": sorted(kind for _, kind, _ in inits),
        "fini": sorted(kind for _, kind in finis),
        "gpu_streams": [stream for _, kind, stream in inits if kind == "GPU"],
    }


def test_gpu_and_cpu_instances_update_in_place(tmp_path: Path, serve) -> None:
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    markers = tmp_path / "markers"
    markers.mkdir()
    repo = tmp_path / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "1" / "model.py").write_text(MODEL)
    config = repo / "m" / "config.pbtxt"
    gpu = "{ count: %d kind: KIND_GPU gpus: [ 0 ] }"
    cpu = "{ count: %d kind: KIND_CPU }"
    config.write_text(_config(markers, f"{cpu % 2}, {gpu % 1}"))
    seen = []
    try:
        with (
            serve(repo, "--model-control-mode=explicit", "--load-model=m") as server,
            httpclient.InferenceServerClient(server.http_url) as client,
        ):
            for groups, live in [
                (f"{cpu % 1}, {gpu % 3}", 4),  # 2 GPU added, 1 CPU removed
                (f"{gpu % 3}, {cpu % 1}", 4),  # reordered: nothing changes
                (f"{gpu % 2}, {cpu % 2}", 4),  # 1 GPU removed, 1 CPU added
            ]:
                config.write_text(_config(markers, groups))
                client.load_model("m")
                data = np.ones((1, 4), np.float32)
                inputs = [httpclient.InferInput("INPUT0", [1, 4], "FP32")]
                inputs[0].set_data_from_numpy(data)
                np.testing.assert_array_equal(
                    client.infer("m", inputs).as_numpy("OUTPUT0"), data
                )
                seen.append(_live(markers, live))
            served = client.get_model_config("m")["instance_group"]
    finally:
        del os.environ["PYTHONDONTWRITEBYTECODE"]
    assert [(s["init"], s["fini"]) for s in seen] == [
        (["CPU", "CPU", "GPU", "GPU", "GPU"], ["CPU"]),
        (["CPU", "CPU", "GPU", "GPU", "GPU"], ["CPU"]),
        (["CPU", "CPU", "CPU", "GPU", "GPU", "GPU"], ["CPU", "GPU"]),
    ]
    # Every GPU instance ran on a stream of its own.
    streams = seen[-1]["gpu_streams"]
    assert len(set(streams)) == len(streams) == 3  # type: ignore[arg-type]
    assert "0" not in streams  # type: ignore[operator]
    assert json.loads(json.dumps(served))[0]["kind"] == "KIND_GPU"
