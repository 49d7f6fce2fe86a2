"""Pipelined instances (repository/placement.core_executors): an instance with
``pipeline_depth`` N runs on N core workers, so N batches are in flight on it at
once (a pytorch GPU instance queues the next batch on its stream while the host
finishes the current one). Checked on the CPU with a gathered instance that holds
its first batch until a second one arrives on the same object."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from coreutil import ModelFactory, batching, request, rows, spec

from tritonx.backends.base import InstanceContext
from tritonx.config import parse_config_text
from tritonx.errors import InvalidArgumentError
from tritonx.repository.placement import core_executors


class Deep:
    def __init__(self, depth: int) -> None:
        self.pipeline_depth = depth


def _config(extra: str = "") -> Any:
    return parse_config_text(
        'name: "m" backend: "pytorch" max_batch_size: 8 '
        "instance_group [ { kind: KIND_CPU count: 1 } ] " + extra,
        "config.pbtxt",
    )


def _active(count: int) -> list[InstanceContext]:
    return [InstanceContext(name=f"i{n}", index=n, kind="CPU") for n in range(count)]


def test_each_instance_runs_on_as_many_workers_as_its_depth() -> None:
    a, b, plain = Deep(2), Deep(3), object()
    assert core_executors([a, plain, b], _active(3), _config()) == [
        a,
        a,
        plain,
        b,
        b,
        b,
    ]
    # Sequence slots and rate-limiter resources belong to instances: one worker.
    for extra in (
        "sequence_batching { }",
        "instance_group [ { kind: KIND_CPU rate_limiter { priority: 1 } } ]",
    ):
        assert core_executors([a, plain], _active(2), _config(extra)) == [a, plain]


class OverlapProbe:
    """Echoes INPUT0 * 2; the first batch waits until a second batch is running
    on this same object (or times out, which the test then reports)."""

    gather_inputs = True
    pipeline_depth = 2

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.second = threading.Event()

    def execute_batch(self, inputs: dict[str, np.ndarray], requests: list) -> dict:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            if self.running > 1:
                self.second.set()
        try:
            self.second.wait(timeout=20)
            return {"OUTPUT0": inputs["INPUT0"] * 2}
        finally:
            with self.lock:
                self.running -= 1

    def execute(self, requests: list) -> list:  # not used: gather_inputs
        raise NotImplementedError


def test_two_batches_in_flight_on_one_pipelined_instance(
    make_model: ModelFactory,
) -> None:
    probe = OverlapProbe()
    model = make_model(
        spec(), batching(), core_executors([probe], _active(1), _config())
    )
    results: dict[int, Any] = {}

    def send(i: int) -> None:
        results[i] = model.infer(request(f"r{i}", rows(1, float(i))))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    threads[0].start()
    # The second request only once the first batch runs: it cannot join it.
    while not probe.running and threads[0].is_alive():
        threading.Event().wait(0.01)
    threads[1].start()
    for thread in threads:
        thread.join(timeout=60)
    assert probe.most == 2
    for i in range(2):
        np.testing.assert_array_equal(
            results[i].outputs[0].as_numpy(), rows(1, float(i)) * 2
        )


def test_pipeline_depth_parameter_is_checked() -> None:
    pytest.importorskip("torch")
    from tritonx.backends.torch_options import TorchSettings

    def depth(value: str) -> int:
        config = _config(
            f'parameters {{ key: "PIPELINE_DEPTH" value {{ string_value: "{value}" }} }}'
        )
        return TorchSettings(config).pipeline_depth

    assert TorchSettings(_config()).pipeline_depth == 2
    assert depth("1") == 1
    for bad in ("0", "9", "two"):
        with pytest.raises(InvalidArgumentError):
            depth(bad)
