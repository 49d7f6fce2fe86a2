"""Running a model's ``model_warmup`` samples before it is marked READY.

As in Triton, every instance runs every sample ``count`` times (at least once), and
one run of a sample is ``batch_size`` requests of batch 1 handed to the instance in
one execution (the core's ``Model.execute_on``: past the queue and the batcher);
a sample of batch_size 0 is skipped. The instances warm up in parallel, each its
samples in order. The requests are answered and counted like any other, so they
show up in the statistics, as they do in Triton.

A sequence model is no exception: Triton hands the instance its warmup requests
past the sequence batcher, so they belong to no sequence (correlation id 0, no
flags), get no control or state inputs from the batcher and take no slot; the
sequence batcher's ``execute_on`` runs them that way. A sample may name the control
inputs itself (L0_warmup does for its sequence models): like any input the config
does not list, they reach the model as they are (Triton's override inputs).

Triton's errors, as its instance code words them: every sample's data is prepared
before any runs, and a problem there (a data file, a request its validation
refuses) fails the load with that error as is; only the errors a model answers
with are gathered under "failed to run warmup sample '<name>': ".
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
from tritonx.config.checks import validate_warmup_sample
from tritonx.config.parse import read_text_file
from tritonx.dtypes import NUMPY_DTYPES
from tritonx.errors import InvalidArgumentError, TritonXError

# The prefix of a warmup request's errors: it has no id.
_REQUEST = "[request id: <id_unknown>] "

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
        data = read_text_file(model_dir / "warmup" / spec.input_data_file)
        if datatype != "BYTES":
            expected = count * np.dtype(NUMPY_DTYPES[datatype]).itemsize
            if len(data) < expected:
                # Triton's text has no space between the file name and "only".
                raise InvalidArgumentError(
                    f"{_REQUEST}warmup setting expects {expected} bytes, but the "
                    f"data provided from {spec.input_data_file}only has "
                    f"{len(data)} bytes"
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
) -> tuple[list[WarmupInput], list[WarmupInput]]:
    """The inputs of one batch-1 request of a warmup sample: those the config
    lists, and the rest (Triton's override inputs, such as the sequence controls
    L0_warmup names in a sequence model's sample), which Triton hands the backend
    beside them without the request's validation. Both get the batch dimension
    when the model batches."""
    rng = np.random.default_rng()
    expected = {i.name: i.data_type for i in config.input}
    listed: list[WarmupInput] = []
    overrides: list[WarmupInput] = []
    for name in sorted(sample.inputs):
        spec = sample.inputs[name]
        if spec.data_type == mc.TYPE_INVALID:
            # The core cannot be handed a tensor without a type; for a listed
            # input this is what Triton's request validation says of one.
            if name not in expected:
                raise InvalidArgumentError(
                    f"{_REQUEST}warmup setting expects input '{name}' to have "
                    "data_type set"
                )
            raise InvalidArgumentError(
                f"{_REQUEST}inference input '{name}' data-type is '<invalid>', but "
                f"model '{config.name}' expects '{wire_datatype(expected[name])}'"
            )
        datatype, data = _sample_data(name, spec, model_dir, rng)
        shape = list(spec.dims)
        if config.max_batch_size > 0:
            shape = [1, *shape]
        (listed if name in expected else overrides).append(
            (name, datatype, shape, data)
        )
    return listed, overrides


# Each sample with the inputs of one of its requests (listed, overrides).
Prepared = list[tuple[mc.ModelWarmup, tuple[list[WarmupInput], list[WarmupInput]]]]


def run_warmup(
    core: Any,
    config: ModelConfig,
    model_dir: Path,
    instances: Sequence[tuple[int, str]],
) -> None:
    """Run all warmup samples on each of ``instances`` (core executor index,
    instance name); raise with Triton's wording if one fails."""
    if not instances:
        return
    from tritonx import _native

    # Triton's order, once an instance is initialized: each sample in turn is
    # checked, its data made and its request validated, before the next one.
    prepared: Prepared = []
    for sample in config.model_warmup:
        if sample.batch_size == 0:
            continue
        validate_warmup_sample(sample)
        log.info("Generating warmup sample data for '%s'", sample.name)
        inputs, overrides = sample_inputs(sample, config, model_dir)
        core.validate(_native.Request(id="", inputs=inputs))
        prepared.append((sample, (inputs, overrides)))
    if not prepared:
        return
    if len(instances) == 1:
        failure = _warm_instance(core, config, prepared, *instances[0])
    else:
        with ThreadPoolExecutor(max_workers=min(len(instances), 64)) as pool:
            futures = [
                pool.submit(_warm_instance, core, config, prepared, index, name)
                for index, name in instances
            ]
            # A refused request raises here, unchanged.
            failures = [f.result() for f in futures]
        failure = next((f for f in failures if f is not None), None)
    if failure is not None:
        raise failure


def _warm_instance(
    core: Any, config: ModelConfig, prepared: Prepared, index: int, name: str
) -> TritonXError | None:
    """Every sample on one instance, each run one execution of its batch_size
    requests; the error of the first run the model fails (Triton stops that
    instance's warmup there)."""
    from tritonx import _native

    for sample, (inputs, overrides) in prepared:
        for iteration in range(1, max(sample.count, 1) + 1):
            log.info(
                "model '%s' instance %s is running warmup sample '%s' for iteration %d",
                config.name,
                name,
                sample.name,
                iteration,
            )
            requests = [
                _native.Request(id="", inputs=inputs) for _ in range(sample.batch_size)
            ]
            errors = core.execute_on(index, requests, overrides)
            answered = [e for e in errors if e is not None]
            if answered:
                return _warmup_error(sample.name, answered)
    return None


def _warmup_error(sample_name: str, errors: list[TritonXError]) -> TritonXError:
    text = "".join(f"{error.message}; " for error in errors)
    failed = InvalidArgumentError(
        f"failed to run warmup sample '{sample_name}': {text}"
    )
    log.error("%s", failed.message)
    return failed
