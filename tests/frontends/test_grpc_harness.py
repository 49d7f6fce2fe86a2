"""A small gRPC-only tritonx server for the gRPC frontend tests (run as a script).

It wires the pieces the real server uses (``tritonx._native`` models with Python
instances, a ``ModelRegistry``, ``GrpcFrontend``) around a minimal in-memory model
manager, so the frontend can be tested in isolation from the repository and
backends. It runs in its own process because ``tritonx._proto`` and
``tritonclient`` both define ``inference.*`` protobuf messages, which cannot share
one process's descriptor pool.

Usage: python test_grpc_harness.py  -> prints "PORT <n>" then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from tritonx.dtypes import NUMPY_DTYPES

# Nothing here is a test; pytest collects no functions from this module.

# Every wire datatype: the numeric ones, and BYTES.
DTYPES = [*NUMPY_DTYPES, "BYTES"]


class _Identity:
    """OUTPUTn = INPUTn for every input; optional custom parameters echoed back."""

    gather_inputs = False

    def __init__(self, outputs: list[str], delay: float = 0.0) -> None:
        self.outputs = outputs
        self.delay = delay

    def execute(self, requests: list[Any]) -> list[Any]:
        results: list[Any] = []
        for request in requests:
            delay = self.delay
            params = request.parameters
            if "delay" in params:
                delay = float(params["delay"])
            if delay:
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    if request.is_cancelled():
                        break
                    time.sleep(0.005)
            if params.get("fail"):
                from tritonx.errors import InvalidArgumentError

                results.append(InvalidArgumentError(str(params["fail"])))
                continue
            out: dict[str, Any] = {}
            for tensor, name in zip(request.inputs, self.outputs, strict=False):
                if tensor.datatype in ("BF16",):
                    out[name] = ("BF16", tensor.as_numpy())
                else:
                    out[name] = tensor.as_numpy()
            results.append(out)
        return results


def _model(
    native: Any,
    name: str,
    datatype: str,
    *,
    max_batch: int = 8,
    version: int = 1,
    delay: float = 0.0,
    instances: int = 1,
) -> Any:
    spec = native.ModelSpec(
        name,
        version,
        max_batch,
        [native.TensorSpec("INPUT0", datatype, [-1])],
        [native.TensorSpec("OUTPUT0", datatype, [-1])],
    )
    return native.Model(
        spec,
        native.SchedulerConfig(),
        [_Identity(["OUTPUT0"], delay) for _ in range(instances)],
    )


class FakeManager:
    """The slice of ModelManager the gRPC frontend uses, over a fixed model set."""

    def __init__(self, native: Any, registry: Any) -> None:
        from tritonx._proto import model_config_pb2

        self.native = native
        self.registry = registry
        self.cfg = model_config_pb2
        self.models: dict[str, dict[int, Any]] = {}
        self.known: set[str] = set()
        self.loads = 0

    def add(self, model: Any) -> None:
        self.models.setdefault(model.name, {})[model.version] = model
        self.known.add(model.name)
        self.registry.add(model)

    def server_ready(self) -> bool:
        return True

    def _get(self, name: str, version: str = "") -> Any:
        self.registry.find(name, version)  # raises with Triton's message
        versions = self.models[name]
        return versions[int(version)] if version else versions[max(versions)]

    def model_ready(self, name: str, version: str = "") -> bool:
        if name not in self.known:
            from tritonx.errors import NotFoundError

            raise NotFoundError(f"Request for unknown model: '{name}' is not found")
        try:
            self.registry.find(name, version)
        except Exception:
            return False
        return True

    def metadata(self, name: str, version: str = "") -> dict[str, Any]:
        model = self._get(name, version)
        return (
            {
                "name": name,
                "versions": [str(v) for v in sorted(self.models[name])],
                "platform": "python",
                "inputs": [
                    {"name": "INPUT0", "datatype": self._dtype(name), "shape": [-1, -1]}
                ],
                "outputs": [
                    {
                        "name": "OUTPUT0",
                        "datatype": self._dtype(name),
                        "shape": [-1, -1],
                    }
                ],
            }
            if model
            else {}
        )

    def _dtype(self, name: str) -> str:
        return name.split("_", 1)[1].upper() if "_" in name else "FP32"

    def config(self, name: str, version: str = "") -> Any:
        model = self._get(name, version)
        config = self.cfg.ModelConfig(
            name=name, backend="python", max_batch_size=model.max_batch_size
        )
        config.input.add(name="INPUT0", data_type=self.cfg.TYPE_FP32, dims=[-1])
        config.output.add(name="OUTPUT0", data_type=self.cfg.TYPE_FP32, dims=[-1])
        return config

    def statistics(self, name: str = "", version: str = "") -> list[dict[str, Any]]:
        rows = []
        names = [name] if name else sorted(self.models)
        for model_name in names:
            if model_name not in self.models:
                from tritonx.errors import InvalidArgumentError

                raise InvalidArgumentError(
                    f"requested model '{model_name}' is not available"
                )
            for v, model in sorted(self.models[model_name].items()):
                s = model.statistics()
                pair = lambda key, s=s: {"count": s[key][0], "ns": s[key][1]}  # noqa: E731
                rows.append(
                    {
                        "name": model_name,
                        "version": str(v),
                        "last_inference": s["last_inference"],
                        "inference_count": s["inference_count"],
                        "execution_count": s["execution_count"],
                        "inference_stats": {
                            k: pair(k)
                            for k in (
                                "success",
                                "fail",
                                "queue",
                                "compute_input",
                                "compute_infer",
                                "compute_output",
                            )
                        },
                        "batch_stats": [
                            {
                                "batch_size": b,
                                "compute_input": {"count": c, "ns": i},
                                "compute_infer": {"count": c, "ns": n},
                                "compute_output": {"count": c, "ns": o},
                            }
                            for b, (c, i, n, o) in sorted(s["batch_stats"].items())
                        ],
                        "memory_usage": [],
                    }
                )
        return rows

    def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        rows = [
            {"name": n, "version": str(v), "state": "READY", "reason": ""}
            for n in sorted(self.models)
            for v in sorted(self.models[n])
        ]
        if not ready_only:
            rows += [
                {"name": n, "version": None, "state": None, "reason": None}
                for n in sorted(self.known - set(self.models))
            ]
        return rows

    async def load(
        self,
        name: str,
        config: str | None = None,
        files: dict[str, bytes] | None = None,
    ) -> None:
        from tritonx.errors import InvalidArgumentError

        if name.startswith("slow"):
            await asyncio.sleep(float(name.split("_")[1]) if "_" in name else 2.0)
        if name.startswith("bad"):
            raise InvalidArgumentError(f"failed to load '{name}': no such model")
        self.loads += 1
        self.last_load = (name, config, files)
        if name not in self.models:
            self.add(_model(self.native, name, "FP32"))

    async def unload(self, name: str, unload_dependents: bool = False) -> None:
        from tritonx.errors import InvalidArgumentError

        if name not in self.models:
            raise InvalidArgumentError(
                f"failed to unload '{name}', no version is available"
            )
        for v in list(self.models.pop(name)):
            self.registry.remove(name, v)


async def _serve() -> None:
    from tritonx import _native
    from tritonx.frontends.grpc import GrpcFrontend

    registry = _native.ModelRegistry()
    manager = FakeManager(_native, registry)
    for dtype in DTYPES:
        manager.add(_model(_native, f"identity_{dtype.lower()}", dtype))
    manager.add(_model(_native, "identity", "FP32"))
    manager.add(_model(_native, "nobatch", "FP32", max_batch=0))
    manager.add(_model(_native, "slowmodel", "FP32", delay=0.5, instances=1))
    manager.add(_model(_native, "multi", "FP32", version=1))
    manager.add(_model(_native, "multi", "FP32", version=3))
    manager.known.add("notready")
    registry.set_known("notready", True)

    frontend = GrpcFrontend(
        manager,
        registry,
        host="127.0.0.1",
        port=0,
        infer_compression_level=sys.argv[1] if len(sys.argv) > 1 else "none",
    )
    port = await frontend.start()
    print(f"PORT {port}", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(done.set)),
        daemon=True,
    ).start()
    await done.wait()
    await frontend.stop(2.0)
    print("STOPPED", flush=True)


if __name__ == "__main__":
    asyncio.run(_serve())
