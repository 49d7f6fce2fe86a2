"""Running a model's ``model_warmup`` samples before it is marked READY.

As in Triton, every instance runs every sample ``count`` times (at least once), and
one run of a sample is ``batch_size`` requests of batch 1 sent together. The core
picks the instance for each request, so the runs are spread over the instances by
sending ``batch_size * instances`` requests at once. Warmup requests go through the
normal request path, so they show up in the statistics, as they do in Triton.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tritonx.config import ModelConfig, wire_datatype
from tritonx.config._pb import mc
from tritonx.dtypes import NUMPY_DTYPES
from tritonx.errors import InvalidArgumentError, TritonXError, as_triton_error

log = logging.getLogger("tritonx.repository")


WarmupInput = tuple[str, str, list[int], bytes]


def _element_count(dims: Sequence[int]) -> int:
    return int(np.prod(list(dims), dtype=np.int64)) if dims else 1


def _sample_data(
    name: str, spec: mc.ModelWarmup.Input, model_dir: Path, rng: np.random.Generator
) -> tuple[str, bytes]:
    datatype = wire_datatype(spec.data_type)
    count = _element_count(spec.dims)
    source = spec.WhichOneof("input_data_type")
    if source == "input_data_file":
        path = model_dir / "warmup" / spec.input_data_file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidArgumentError(
                f"failed to read warmup data file {path}: {exc.strerror or exc}"
            ) from exc
        if datatype != "BYTES":
            expected = count * np.dtype(NUMPY_DTYPES[datatype]).itemsize
            if len(data) < expected:
                raise InvalidArgumentError(
                    f"warmup setting expects {expected} bytes, but the data "
                    f"provided from {spec.input_data_file} only has {len(data)} bytes"
                )
            data = data[:expected]
        return datatype, data
    if datatype == "BYTES":
        # Zero and random data both give empty strings (what Triton sends).
        return datatype, b"\x00\x00\x00\x00" * count
    np_type = NUMPY_DTYPES[datatype]
    if source == "random_data":
        if np.issubdtype(np_type, np.floating):
            values = rng.random(count).astype(np_type)
        elif np_type is np.bool_:
            values = rng.integers(0, 2, count).astype(np.bool_)
        else:
            info = np.iinfo(np_type)
            values = rng.integers(info.min, info.max, count, dtype=np_type)
        return datatype, values.tobytes()
    return datatype, bytes(count * np.dtype(np_type).itemsize)


def sample_inputs(
    sample: mc.ModelWarmup, config: ModelConfig, model_dir: Path
) -> list[WarmupInput]:
    """The inputs of one batch-1 request of a warmup sample."""
    rng = np.random.default_rng()
    inputs: list[WarmupInput] = []
    for name in sorted(sample.inputs):
        spec = sample.inputs[name]
        datatype, data = _sample_data(name, spec, model_dir, rng)
        shape = list(spec.dims)
        if config.max_batch_size > 0:
            shape = [1, *shape]
        inputs.append((name, datatype, shape, data))
    return inputs


def _infer_once(core: Any, inputs: list[WarmupInput]) -> None:
    from tritonx import _native

    core.infer(_native.Request(id="", inputs=inputs))


def run_warmup(
    core: Any, config: ModelConfig, model_dir: Path, instance_count: int
) -> None:
    """Run all warmup samples; raise with Triton's wording if one fails."""
    if not config.model_warmup:
        return
    for sample in config.model_warmup:
        log.info("Generating warmup sample data for '%s'", sample.name)
        inputs = sample_inputs(sample, config, model_dir)
        parallel = max(sample.batch_size, 1) * max(instance_count, 1)
        with ThreadPoolExecutor(max_workers=min(parallel, 64)) as pool:
            for iteration in range(1, max(sample.count, 1) + 1):
                log.info(
                    "model '%s' is running warmup sample '%s' for iteration %d",
                    config.name,
                    sample.name,
                    iteration,
                )
                futures = [
                    pool.submit(_infer_once, core, inputs) for _ in range(parallel)
                ]
                for future in futures:
                    error = future.exception()
                    if error is not None:
                        raise _warmup_error(sample.name, error)


def _warmup_error(sample_name: str, error: BaseException) -> TritonXError:
    cause = as_triton_error(error)
    failed = type(cause)(
        f"failed to run warmup sample '{sample_name}': {cause.message}"
    )
    log.error("%s", failed.message)
    return failed
