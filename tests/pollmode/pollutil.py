"""A repository the poll-mode tests change while a server watches it.

Files are written atomically (temporary file, then rename), so a poll never sees
half a file. The model answers the ``value`` parameter of its config (or its version
number without one); what it does is recorded as marker files in ``markers``, a
directory outside the repository (files written inside a model directory would
count as changes to it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as httpclient

MODEL_PY = """
import json
import os
import time
import uuid

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.markers = params["markers"]["string_value"]
        self.value = float(params.get("value", {}).get("string_value",
                                                       args["model_version"]))
        self.name = args["model_name"] + "-" + args["model_version"]
        open(os.path.join(self.markers, "init-" + self.name + "-" + uuid.uuid4().hex),
             "w").close()
        FAIL_INIT

    def execute(self, requests):
        responses = []
        for r in requests:
            tag = str(int(pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()[0]))
            if tag != "0":
                open(os.path.join(self.markers, "ran-" + tag), "w").close()
                while not os.path.exists(os.path.join(self.markers, "open")):
                    time.sleep(0.01)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", np.array([self.value], np.float32))]))
        return responses
"""

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU, count: 2 }} ]
parameters {{ key: "markers", value: {{ string_value: "{markers}" }} }}
{extra}"""


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class PollRepo:
    def __init__(self, root: Path, markers: Path) -> None:
        self.root = root
        self.markers = markers
        root.mkdir(parents=True, exist_ok=True)
        markers.mkdir(parents=True, exist_ok=True)

    def config(
        self, name: str, extra: str = "", config_name: str | None = None
    ) -> None:
        text = CONFIG.format(
            name=config_name or name, markers=self.markers, extra=extra
        )
        write_atomic(self.root / name / "config.pbtxt", text)

    def version(self, name: str, version: int, fail_init: bool = False) -> None:
        failing = "raise RuntimeError('init failed on purpose')" if fail_init else ""
        write_atomic(
            self.root / name / str(version) / "model.py",
            MODEL_PY.replace("FAIL_INIT", failing),
        )

    def model(self, name: str, *versions: int, extra: str = "") -> None:
        self.config(name, extra)
        for version in versions:
            self.version(name, version)

    def remove(self, name: str, version: int | None = None) -> None:
        target = self.root / name
        if version is not None:
            target = target / str(version)
        # Renamed away first: the poll sees it gone at once, never half-deleted.
        gone = self.root.parent / f"removed-{time.monotonic_ns()}"
        os.replace(target, gone)
        shutil.rmtree(gone)

    def inits(self, name: str, version: int) -> int:
        return len(list(self.markers.glob(f"init-{name}-{version}-*")))

    def ran(self, tag: int) -> bool:
        return (self.markers / f"ran-{tag}").exists()

    def release(self) -> None:
        (self.markers / "open").touch()


def wait_for(what: str, check: Callable[[], Any], deadline_s: float = 90.0) -> Any:
    """Waits on observable state; the deadline only bounds a failing test."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def index(client: httpclient.InferenceServerClient) -> list[dict[str, Any]]:
    return list(client.get_model_repository_index())


def states(client: httpclient.InferenceServerClient, name: str) -> dict[str, str]:
    return {
        row["version"]: row["state"]
        for row in index(client)
        if row["name"] == name and "version" in row
    }


def infer_value(
    client: httpclient.InferenceServerClient,
    name: str,
    version: str = "",
    tag: int = 0,
) -> float:
    tensor = httpclient.InferInput("INPUT0", [1], "FP32")
    tensor.set_data_from_numpy(np.array([tag], np.float32))
    result = client.infer(name, [tensor], model_version=version)
    return float(result.as_numpy("OUTPUT0")[0])


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    """(status, message) of a tritonclient call that must fail."""
    try:
        call()
    except Exception as error:  # InferenceServerException, from either client
        text = str(error)
        status = getattr(error, "status", lambda: "")()
        message = getattr(error, "message", lambda: text)()
        return str(status), str(message)
    raise AssertionError("the call succeeded")


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def wait_states(
    client: httpclient.InferenceServerClient, name: str, expected: dict[str, str]
) -> None:
    """Waits until the index shows exactly ``expected`` for ``name``'s versions."""
    seen: list[dict[str, str]] = []

    def settled() -> bool:
        seen.append(states(client, name))
        return seen[-1] == expected

    try:
        wait_for(f"{name} at {expected}", settled)
    except AssertionError:
        raise AssertionError(
            f"{name} never reached {expected}; last {seen[-1:]}"
        ) from None
