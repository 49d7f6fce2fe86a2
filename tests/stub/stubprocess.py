"""The Python model the stub-process tests serve (tests/stub/test_stub_process.py,
test_stub_environments.py), how it is written into a repository, and how it is
asked over each protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer
from tritonclient.utils import InferenceServerException

PROCESS = 'parameters { key: "EXECUTION_MODE" value: { string_value: "process" } }\n'

CONFIG = """
name: "%s"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "TEXT" data_type: TYPE_STRING dims: [ 2 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT1" data_type: TYPE_STRING dims: [ 2 ] }
]
"""

# OUTPUT0 = INPUT0 * 2, OUTPUT1 = TEXT upper-cased. A negative INPUT0[0] triggers the
# fault named by the model's FAULT parameter; a request parameter "tag" comes back.
MODEL = """
import ctypes
import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.fault = config.get("parameters", {}).get("FAULT", {}).get("string_value")
        self.dir = args["model_repository"]
        self.kept = []
        if os.path.exists(os.path.join(self.dir, "broken")):
            raise RuntimeError("the model is broken")

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            text = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy()
            if x.reshape(-1)[0] < 0:
                if self.fault == "exit":
                    os._exit(1)
                if self.fault == "break":  # later initializes fail
                    open(os.path.join(self.dir, "broken"), "w").close()
                    os._exit(1)
                if self.fault == "segv":
                    ctypes.string_at(0)
                if self.fault == "hang":
                    while True:
                        time.sleep(0.05)
                if self.fault == "leak":
                    self.kept.append(np.ones(64 << 20, dtype=np.uint8))
            upper = np.array([t.upper() for t in text.reshape(-1)], dtype=object)
            params = json.loads(r.parameters())
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", (x * 2).astype(np.float32)),
                 pb_utils.Tensor("OUTPUT1", upper.reshape(text.shape))],
                parameters={"tag": params.get("tag", ""), "pid": os.getpid()}))
        return out

    def finalize(self):
        open(os.path.join(self.dir, "finalized-%d" % os.getpid()), "w").close()
"""


def write_model(repo: Path, name: str, extra: str = "", model: str = MODEL) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(CONFIG % name + extra)
    (repo / name / "1" / "model.py").write_text(model)


def inputs_for(mod: object, value: float) -> list[object]:
    x = np.full((1, 4), value, dtype=np.float32)
    text = np.array([[b"ab", b"cd"]], dtype=object)
    a = mod.InferInput("INPUT0", [1, 4], "FP32")  # type: ignore[attr-defined]
    a.set_data_from_numpy(x)
    b = mod.InferInput("TEXT", [1, 2], "BYTES")  # type: ignore[attr-defined]
    b.set_data_from_numpy(text)
    return [a, b]


def infer_http(server: RunningServer, model: str, value: float = 1.0) -> object:
    with httpclient.InferenceServerClient(server.http_url) as client:
        return client.infer(
            model, inputs_for(httpclient, value), parameters={"tag": "h"}
        )


def infer_grpc(server: RunningServer, model: str, value: float = 1.0) -> object:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        return client.infer(
            model, inputs_for(grpcclient, value), parameters={"tag": "g"}
        )


def fault_parameter(kind: str) -> str:
    return f'parameters {{ key: "FAULT" value: {{ string_value: "{kind}" }} }}\n'


def child_processes(pid: int) -> dict[int, bytes]:
    """Child pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def stub_pids(server_pid: int) -> list[int]:
    """The server's stub processes: its own children, or the zygote's."""
    pids = []
    for pid, cmdline in child_processes(server_pid).items():
        if b"--zygote" in cmdline:
            pids.extend(child_processes(pid))
        elif b"tritonx.backends.stub" in cmdline:
            pids.append(pid)
    return sorted(pids)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def serves(server: RunningServer, model: str) -> bool:
    try:
        infer_http(server, model)
    except InferenceServerException:
        return False
    return True
