"""Helpers for the core tests: model specs, requests and recording Python instances."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tritonx import _native

OutputMap = dict[str, Any]
# make_model(spec, config, instances) -> Model (the fixture in conftest.py)
ModelFactory = Callable[..., _native.Model]


def spec(
    max_batch_size: int = 8,
    dims: Sequence[int] = (4,),
    *,
    name: str = "m",
    extra_inputs: Sequence[_native.TensorSpec] = (),
    extra_outputs: Sequence[_native.TensorSpec] = (),
) -> _native.ModelSpec:
    """FP32 INPUT0 -> FP32 OUTPUT0 with the given non-batch dims."""
    inputs = [_native.TensorSpec("INPUT0", "FP32", list(dims)), *extra_inputs]
    outputs = [_native.TensorSpec("OUTPUT0", "FP32", list(dims)), *extra_outputs]
    return _native.ModelSpec(name, 1, max_batch_size, inputs, outputs)


def batching(
    preferred: Sequence[int] = (), delay_us: int = 0, **kwargs: Any
) -> _native.SchedulerConfig:
    return _native.SchedulerConfig(
        dynamic_batching=True,
        preferred_batch_sizes=list(preferred),
        max_queue_delay_us=delay_us,
        **kwargs,
    )


def request(
    rid: str,
    data: np.ndarray,
    *,
    name: str = "INPUT0",
    extra: Sequence[tuple[str, str, Sequence[int], Any]] = (),
    parameters: Mapping[str, bool | int | float | str] | None = None,
) -> _native.Request:
    return _native.Request(
        rid,
        [(name, "FP32", list(data.shape), data), *extra],
        parameters=parameters,
    )


def rows(batch: int, value: float, width: int = 4) -> np.ndarray:
    """A (batch, width) FP32 array whose row i holds value + i."""
    base = np.arange(batch, dtype=np.float32)[:, None] + np.float32(value)
    return np.ascontiguousarray(np.repeat(base, width, axis=1))


class EchoInstance:
    """Echoes INPUT0 as OUTPUT0 (zero copy) and records what it was given.

    A batch containing a request whose id starts with "block" waits for `release`.
    """

    gather_inputs = False

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.request_counts: list[int] = []
        self.executed_ids: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.input_pointers: dict[str, int] = {}

    def execute(
        self, requests: list[_native.Request]
    ) -> list[OutputMap | BaseException]:
        self.batch_sizes.append(sum(r.batch_size for r in requests))
        self.request_counts.append(len(requests))
        self.executed_ids.extend(r.id for r in requests)
        if any(r.id.startswith("block") for r in requests):
            self.started.set()
            self.release.wait(30)
        out: list[OutputMap | BaseException] = []
        for r in requests:
            view = r.inputs[0].as_numpy()
            self.input_pointers[r.id] = view.__array_interface__["data"][0]
            out.append({"OUTPUT0": view})
        return out
