"""Zero-copy tensors, gathered execution (execute_batch) against numpy references,
statistics counters and arena statistics."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from coreutil import EchoInstance, ModelFactory, batching, request, rows, spec

from tritonx import _native


def _pointer(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def test_input_view_shares_memory_with_the_callers_buffer(
    make_model: ModelFactory,
) -> None:
    instance = EchoInstance()
    model = make_model(spec(8), _native.SchedulerConfig(), [instance])
    data = rows(2, 5.0)
    req = request("z", data)
    view = req.inputs[0].as_numpy()
    assert np.shares_memory(view, data)
    assert _pointer(view) == _pointer(data)
    assert view.flags.writeable  # Triton hands models writable inputs
    assert bytes(req.inputs[0].raw()) == data.tobytes()

    response = model.infer(req)
    # The instance saw the caller's memory, and the echoed output still points there.
    assert instance.input_pointers["z"] == _pointer(data)
    out = response.outputs[0].as_numpy()
    assert np.shares_memory(out, data)
    np.testing.assert_array_equal(out, data)


def test_bytes_input_round_trip(make_model: ModelFactory) -> None:
    class Upper:
        gather_inputs = False

        def execute(self, requests: list[_native.Request]) -> list[dict[str, Any]]:
            out = []
            for r in requests:
                text = r.inputs[0].as_numpy()
                assert text.dtype == object
                out.append(
                    {
                        "OUT": np.array(
                            [s.upper() for s in text.ravel()], dtype=object
                        ).reshape(text.shape)
                    }
                )
            return out

    model_spec = _native.ModelSpec(
        "s",
        1,
        4,
        [_native.TensorSpec("TEXT", "BYTES", [-1])],
        [_native.TensorSpec("OUT", "BYTES", [-1])],
    )
    model = make_model(model_spec, _native.SchedulerConfig(), [Upper()])
    items = [b"ab", b"", b"xyz"]
    wire = b"".join(len(s).to_bytes(4, "little") + s for s in items)
    response = model.infer(_native.Request("b", [("TEXT", "BYTES", [1, 3], wire)]))
    out = response.outputs[0]
    assert out.datatype == "BYTES"
    assert out.shape == [1, 3]
    assert out.as_numpy().tolist() == [[b"AB", b"", b"XYZ"]]


class AffineBatch:
    """Gathered instance: OUTPUT0 = 2 * INPUT0 + 1, SUM = row sums; records batches."""

    gather_inputs = True

    def __init__(self, hold_first: bool = False) -> None:
        self.batches: list[tuple[int, list[str], bool]] = []
        self.hold = threading.Event() if hold_first else None
        self.started = threading.Event()

    def execute_batch(
        self, inputs: dict[str, np.ndarray], requests: list[_native.Request]
    ) -> dict[str, Any]:
        x = inputs["INPUT0"]
        owned = all(not np.shares_memory(x, r.inputs[0].as_numpy()) for r in requests)
        self.batches.append((int(x.shape[0]), [r.id for r in requests], owned))
        if self.hold is not None and not self.hold.is_set():
            self.started.set()
            self.hold.wait(10)
            self.hold.set()
        assert x.shape[0] == sum(r.batch_size for r in requests)
        return {
            "OUTPUT0": 2 * x + 1,
            "SUM": x.sum(axis=1, keepdims=True).astype(np.float64),
            "IGNORED": np.zeros(1),  # not in the model config: dropped
        }


def _gather_spec() -> _native.ModelSpec:
    return spec(
        16,
        (4,),
        name="g",
        extra_outputs=[_native.TensorSpec("SUM", "FP64", [1])],
    )


def test_gathered_execution_matches_numpy(make_model: ModelFactory) -> None:
    instance = AffineBatch(hold_first=True)
    model = make_model(_gather_spec(), batching((), 0), [instance])
    before = _native.arena_stats()
    batch_sizes = [1, 3, 2, 4, 1, 5]
    inputs = [rows(b, 10.0 * i) for i, b in enumerate(batch_sizes)]

    async def main() -> list[_native.Response]:
        loop = asyncio.get_running_loop()
        first: asyncio.Future[_native.Response] = loop.create_future()
        model.submit(
            request("first", rows(1, -1.0)), _native.settle(first), first.get_loop()
        )
        assert await asyncio.to_thread(instance.started.wait, 10)
        futures = []
        for i, data in enumerate(inputs):
            future: asyncio.Future[_native.Response] = loop.create_future()
            model.submit(
                request(f"r{i}", data), _native.settle(future), future.get_loop()
            )
            futures.append(future)
        instance.hold.set()  # type: ignore[union-attr]
        await first
        return list(await asyncio.wait_for(asyncio.gather(*futures), 10))

    responses = asyncio.run(main())
    for data, response in zip(inputs, responses, strict=True):
        names = [t.name for t in response.outputs]
        assert names == ["OUTPUT0", "SUM"]  # produced order, IGNORED dropped
        np.testing.assert_allclose(response.outputs[0].as_numpy(), 2 * data + 1)
        np.testing.assert_allclose(
            response.outputs[1].as_numpy(), data.sum(axis=1, keepdims=True)
        )
        assert response.outputs[0].shape == [data.shape[0], 4]
        assert response.outputs[1].datatype == "FP64"
    # After the held one, the six queued requests (16 items) form one gathered batch
    # in arena memory (not the callers' buffers).
    assert instance.batches[1] == (16, [f"r{i}" for i in range(6)], True)
    after = _native.arena_stats()
    assert after["allocations"] >= before["allocations"] + 1
    del responses
    # The worker drops the batch's arena blocks just after delivering the responses.
    deadline = time.monotonic() + 5
    while _native.arena_stats()["in_use_bytes"] != before["in_use_bytes"]:
        assert time.monotonic() < deadline, _native.arena_stats()
        gc.collect()
        _native.release_pending_refs()
        time.sleep(0.01)


def test_gathered_requested_outputs_are_filtered(make_model: ModelFactory) -> None:
    model = make_model(_gather_spec(), _native.SchedulerConfig(), [AffineBatch()])
    data = rows(2, 1.0)
    req = _native.Request(
        "f", [("INPUT0", "FP32", [2, 4], data)], requested_outputs=["SUM"]
    )
    response = model.infer(req)
    assert [t.name for t in response.outputs] == ["SUM"]
    np.testing.assert_allclose(
        response.outputs[0].as_numpy(), data.sum(1, keepdims=True)
    )


def test_arena_reuse_after_repeated_gathered_runs(make_model: ModelFactory) -> None:
    instance = AffineBatch()
    model = make_model(_gather_spec(), batching((8,), 2000), [instance])
    before = _native.arena_stats()

    def one(i: int) -> None:
        data = rows(1 + i % 2, float(i))
        response = model.infer(request(str(i), data))
        np.testing.assert_allclose(response.outputs[0].as_numpy(), 2 * data + 1)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(200)))
    after = _native.arena_stats()
    multi = [b for b in instance.batches if len(b[1]) > 1]
    assert multi, "no batch gathered more than one request"
    assert after["allocations"] - before["allocations"] == len(multi)
    assert after["reuses"] > before["reuses"]
    assert after["reserved_bytes"] >= after["in_use_bytes"]
    assert after["peak_in_use_bytes"] >= after["in_use_bytes"]
    assert isinstance(after["pinned"], bool)


def test_statistics_counters(make_model: ModelFactory) -> None:
    instance = EchoInstance()
    model = make_model(spec(8), batching((4,), 1000), [instance])
    with ThreadPoolExecutor(6) as pool:
        list(
            pool.map(
                lambda i: model.infer(request(str(i), rows(1 + i % 3, i))), range(90)
            )
        )
    stats = model.statistics()
    assert stats["inference_count"] == sum(1 + i % 3 for i in range(90))
    assert stats["execution_count"] == len(instance.batch_sizes)
    assert stats["execution_count"] < 90  # batching merged some executions
    assert stats["success"][0] == 90
    assert stats["queue"][0] == 90
    assert stats["compute_infer"][0] == 90
    assert stats["fail"][0] == 0
    assert stats["last_inference"] > 0
    per_size = {size: v[0] for size, v in stats["batch_stats"].items()}
    expected: dict[int, int] = {}
    for size in instance.batch_sizes:
        expected[size] = expected.get(size, 0) + 1
    assert per_size == expected
    assert (
        sum(size * count for size, count in per_size.items())
        == stats["inference_count"]
    )
