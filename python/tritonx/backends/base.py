"""The contracts between the model manager, the backends and the core (§3).

A backend is a factory of models; a model is a factory of instances; an instance is
what a core worker thread calls. Only ``Instance`` is seen by C++, so its shape is
fixed by architecture.md §1; the rest is Python-to-Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from tritonx.errors import as_triton_error

if TYPE_CHECKING:
    from tritonx._native import Request
    from tritonx.host_policy import HostBinding

# The config is a generated protobuf message; typed loosely so that this module
# imports even before the protos are generated.
ModelConfig = Any

# An output is a numpy array (object arrays become BYTES), any DLPack tensor (torch,
# CuPy, a core Tensor; taken where it lives) or (wire datatype, one of those).
OutputValue = np.ndarray | tuple[str, np.ndarray] | Any
# None: no response now (a request the model rescheduled, iterative sequences).
ExecuteResult = Sequence[Mapping[str, OutputValue] | BaseException | None]
T = TypeVar("T", bound="ClosableInstance")


@dataclass
class ModelContext:
    """Everything a backend needs to load one model version."""

    name: str
    version: int
    config: ModelConfig  # model_config_pb2.ModelConfig, normalized
    config_json: str  # Triton's JSON rendering of ``config``
    model_dir: Path  # <repository>/<name>
    version_dir: Path  # <repository>/<name>/<version>
    model_file: Path  # version_dir / default_model_filename (or backend default)
    repository: Path
    backend_config: dict[str, str] = field(default_factory=dict)
    # The server's _native.ServerContext (None outside a server): a backend that
    # lets models call models (BLS) finds them in its registry, never elsewhere.
    server: Any = None
    # The loading manager's repository/model_control.ModelControl (None outside a
    # server): what a Python model's pb_utils.load_model & co. call.
    model_control: Any = None


@dataclass
class InstanceContext:
    """One instance of an instance group (Triton's naming is decided by the caller)."""

    name: str  # e.g. "add_sub_0" or "add_sub_0_1" when the group has count > 1
    index: int  # position among all instances of the model
    kind: str  # "CPU" | "GPU" | "MODEL"
    device_id: int = 0
    cuda_stream: int = 0  # 0 = none
    # A passive instance (instance_group passive: true) is initialized and
    # finalized like any other but is given no work (Triton's rule).
    passive: bool = False
    # Its host policy's name: the group's host_policy, else Triton's default for
    # its kind ("cpu", "gpu_<device>", "model").
    host_policy: str = ""
    # What that policy (--host-policy) binds its threads to; None: the server
    # defines no such policy. Set by the loader before create_instance, which runs
    # on a thread already bound to it; a backend that starts processes of its own
    # (python stubs) binds them to it (tritonx.host_policy).
    host_binding: HostBinding | None = None


@runtime_checkable
class Instance(Protocol):
    """What the core's worker thread calls (see architecture.md §1)."""

    gather_inputs: bool

    def execute(self, requests: list[Request]) -> ExecuteResult:
        """One entry per request, in order: outputs or an exception."""
        ...

    def execute_batch(
        self, inputs: dict[str, np.ndarray], requests: list[Request]
    ) -> Mapping[str, OutputValue]:
        """Batched outputs for inputs concatenated along dim 0."""
        ...


def requested_outputs_of(requests: Sequence[Request]) -> set[str] | None:
    """The outputs a batch must produce: those some request asked for, or None (all)
    when one of them named none."""
    wanted: set[str] = set()
    for request in requests:
        if not request.requested_outputs:
            return None
        wanted.update(request.requested_outputs)
    return wanted or None


class GatheredInstance:
    """Base of instances that run a whole gathered batch as one framework call
    (onnxruntime, PyTorch). A subclass gives ``run(inputs, wanted)``; this class
    gives both entry points of the Instance protocol over it."""

    gather_inputs = True

    def run(
        self, inputs: Mapping[str, np.ndarray], wanted: set[str] | None
    ) -> Mapping[str, OutputValue]:
        """Outputs for `inputs` (batched along dim 0); `wanted` None means all."""
        raise NotImplementedError

    def execute_batch(
        self, inputs: dict[str, np.ndarray], requests: list[Request]
    ) -> Mapping[str, OutputValue]:
        return self.run(inputs, requested_outputs_of(requests))

    def execute(self, requests: list[Request]) -> ExecuteResult:
        """Per-request fallback (the core calls execute_batch)."""
        results: list[Mapping[str, OutputValue] | BaseException] = []
        for request in requests:
            try:
                inputs = {t.name: t.as_numpy() for t in request.inputs}
                results.append(self.run(inputs, requested_outputs_of([request])))
            except Exception as exc:
                results.append(as_triton_error(exc))
        return results


class ClosableInstance(Protocol):
    def close(self) -> None: ...


class InstanceKeeper:
    """Part of a backend model that keeps the instances it made and closes them all
    at unload (onnxruntime, PyTorch, TensorRT: each instance owns framework state)."""

    def __init__(self) -> None:
        self._instances: list[ClosableInstance] = []

    def keep(self, instance: T) -> T:
        self._instances.append(instance)
        return instance

    def close_instances(self) -> None:
        instances, self._instances = self._instances, []
        for instance in instances:
            instance.close()

    def remove_instance(self, instance: Any) -> None:
        """Closes one instance an instance update retired (it runs nothing more)."""
        self._instances = [i for i in self._instances if i is not instance]
        instance.close()


class BackendModel(Protocol):
    """A loaded model version: makes instances, releases everything on unload.

    Optional: ``remove_instance(instance)`` releases one instance that an instance
    update retired (a reload whose config changed only in ``instance_group``), once
    it runs nothing more; the model keeps serving with the others. A backend model
    without it is built again on such a reload."""

    def create_instance(self, ictx: InstanceContext) -> Instance: ...

    def unload(self) -> None: ...


class Backend(Protocol):
    """A backend resolved by name from the ``tritonx.backends`` entry points.

    ``auto_complete_config(config, ctx)`` is optional: when present it fills the
    config in place before the config is normalized and validated.
    """

    name: str

    def load_model(self, ctx: ModelContext) -> BackendModel: ...
