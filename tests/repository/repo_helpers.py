"""Helpers for the ModelManager tests: real model repositories.

The Python model below is driven by marker files in its version directory (FAIL,
DELAY, EXEC_FAIL) and writes what happens to it (initialize, execute, finalize) as
JSON lines into the directory named by the config parameter ``log_dir``.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

MODEL_PY = textwrap.dedent(
    """
    import json
    import os
    import threading
    import time

    import numpy as np
    import triton_python_backend_utils as pb_utils

    _lock = threading.Lock()


    class TritonPythonModel:
        def initialize(self, args):
            config = json.loads(args["model_config"])
            params = config.get("parameters", {})
            self.log_dir = params.get("log_dir", {}).get("string_value", "")
            self.version = int(args["model_version"])
            self.instance = args["model_instance_name"]
            self.vdir = os.path.join(args["model_repository"], args["model_version"])
            self.delay = float(self._marker("DELAY") or 0)
            self._record("initialize", args={k: v for k, v in args.items()
                                             if k != "model_config"})
            if self._marker("FAIL") is not None:
                raise RuntimeError("init failed on purpose")
            time.sleep(float(self._marker("INIT_DELAY") or 0))

        def _marker(self, name):
            path = os.path.join(self.vdir, name)
            if not os.path.exists(path):
                return None
            with open(path) as f:
                return f.read().strip()

        def _record(self, event, **fields):
            if not self.log_dir:
                return
            line = json.dumps({"event": event, "version": self.version,
                               "instance": self.instance, **fields})
            with _lock, open(os.path.join(self.log_dir, "events.jsonl"), "a") as f:
                f.write(line + "\\n")

        def execute(self, requests):
            inputs = [
                {t.name(): t.as_numpy().tolist() if t.as_numpy().dtype != object
                 else [x.decode() for x in t.as_numpy().ravel()]
                 for t in r.inputs()}
                for r in requests
            ]
            self._record("execute", inputs=inputs)
            if self._marker("EXEC_FAIL") is not None:
                return [
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError("An Error Occurred"))
                    for _ in requests
                ]
            time.sleep(self.delay)
            out = []
            for r in requests:
                x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
                y = (x + self.version).astype(np.float32)
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", y)]))
            return out

        def finalize(self):
            self._record("finalize")
    """
)


def model_config(name: str, log_dir: Path, extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        name: "{name}"
        backend: "python"
        max_batch_size: 8
        input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [4] }}]
        output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [4] }}]
        parameters {{ key: "log_dir" value: {{ string_value: "{log_dir}" }} }}
        """
    ) + textwrap.dedent(extra)


@dataclass
class Repo:
    """A model repository directory plus the directory the models log into."""

    root: Path
    log_dir: Path

    def add(
        self,
        name: str,
        versions: Iterable[int | str] = (1,),
        extra: str = "",
        config: str | None = None,
    ) -> Path:
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        text = model_config(name, self.log_dir, extra) if config is None else config
        (model_dir / "config.pbtxt").write_text(text)
        for version in versions:
            self.add_version(name, version)
        return model_dir

    def add_version(self, name: str, version: int | str, **markers: str) -> Path:
        vdir = self.root / name / str(version)
        vdir.mkdir(parents=True, exist_ok=True)
        (vdir / "model.py").write_text(MODEL_PY)
        for marker, content in markers.items():
            (vdir / marker).write_text(content)
        return vdir

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        path = self.log_dir / "events.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [r for r in rows if event is None or r["event"] == event]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_manager(repos: list[Path], mode: str = "explicit", **options: Any) -> Any:
    from tritonx import _native
    from tritonx.repository import ManagerOptions, ModelManager

    opts = ManagerOptions(repositories=repos, control_mode=mode, **options)
    return ModelManager(opts, _native.ModelRegistry())


def infer(manager: Any, name: str, value: float = 0.0, version: str = "") -> float:
    """One batch-1 request through the registry; returns OUTPUT0[0][0]."""
    from tritonx import _native

    model = manager.registry.find(name, version)
    data = np.full((1, 4), value, dtype=np.float32)
    request = _native.Request(
        id="", inputs=[("INPUT0", "FP32", [1, 4], data.tobytes())]
    )
    response = model.infer(request)
    return float(response.outputs[0].as_numpy()[0][0])
