"""A complete tritonx backend in one file: every output is its input times a factor.

config.pbtxt::

    backend: "example"
    max_batch_size: 8
    input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
    output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
    parameters { key: "factor" value: { string_value: "2.5" } }

Inputs and outputs are paired by position. The instance asks the core for gathered
inputs, so it sees one array per input for the whole dynamic batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ScaleInstance:
    gather_inputs = True

    def __init__(self, pairs: list[tuple[str, str]], factor: float) -> None:
        self._pairs = pairs
        self._factor = factor

    def execute_batch(
        self, inputs: dict[str, np.ndarray], requests: list[Any]
    ) -> dict[str, np.ndarray]:
        # numpy releases the GIL for large multiplies, so instances overlap there.
        return {
            out: inputs[inp] * inputs[inp].dtype.type(self._factor)
            for inp, out in self._pairs
        }

    def execute(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        results = []
        for request in requests:
            arrays = {t.name: t.as_numpy() for t in request.inputs}
            results.append(self.execute_batch(arrays, [request]))
        return results


class ScaleModel:
    def __init__(self, ctx: Any) -> None:
        config = ctx.config
        param = config.parameters.get("factor")
        self._factor = float(param.string_value) if param is not None else 1.0
        self._pairs = [
            (i.name, o.name) for i, o in zip(config.input, config.output, strict=False)
        ]

    def create_instance(self, ictx: Any) -> ScaleInstance:
        return ScaleInstance(self._pairs, self._factor)

    def unload(self) -> None:
        pass


class ScaleBackend:
    name = "example"

    def load_model(self, ctx: Any) -> ScaleModel:
        return ScaleModel(ctx)


def create_backend() -> ScaleBackend:
    return ScaleBackend()
