"""The scheduler through tritonx._native with real threads and asyncio."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from coreutil import EchoInstance, ModelFactory, batching, request, rows, spec

from tritonx import _native, errors


def _check_echo(response: _native.Response, data: np.ndarray) -> None:
    assert len(response.outputs) == 1
    out = response.outputs[0]
    assert out.name == "OUTPUT0"
    assert out.shape == list(data.shape)
    np.testing.assert_array_equal(out.as_numpy(), data)


def test_threads_infer_no_request_lost(make_model: ModelFactory) -> None:
    instances = [EchoInstance(), EchoInstance()]
    model = make_model(spec(8), batching((4, 8), 2000), instances)
    threads, per_thread = 12, 40

    def submitter(t: int) -> int:
        done = 0
        for i in range(per_thread):
            data = rows(1 + (i % 3), t * 1000 + i * 10)
            response = model.infer(request(f"{t}-{i}", data))
            assert response.id == f"{t}-{i}"
            assert response.model_name == "m"
            assert response.model_version == "1"
            _check_echo(response, data)
            done += 1
        return done

    with ThreadPoolExecutor(threads) as pool:
        assert sum(pool.map(submitter, range(threads))) == threads * per_thread

    executed = instances[0].executed_ids + instances[1].executed_ids
    assert len(executed) == threads * per_thread
    assert len(set(executed)) == len(executed)  # nobody ran twice
    sizes = instances[0].batch_sizes + instances[1].batch_sizes
    assert max(sizes) <= 8
    assert max(instances[0].request_counts + instances[1].request_counts) > 1  # batched
    stats = model.statistics()
    assert stats["inference_count"] == sum(sizes)
    assert stats["execution_count"] == len(sizes)
    assert stats["success"][0] == threads * per_thread
    assert stats["pending"] == 0


def test_asyncio_submit_no_request_lost(make_model: ModelFactory) -> None:
    instances = [EchoInstance(), EchoInstance()]
    model = make_model(spec(8), batching((8,), 1000), instances)
    count = 600

    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures = []
        inputs = []
        for i in range(count):
            data = rows(1 + i % 2, i * 3)
            future: asyncio.Future[_native.Response] = loop.create_future()
            model.submit(
                request(str(i), data), _native.settle(future), future.get_loop()
            )
            futures.append(future)
            inputs.append(data)
            if i % 50 == 0:
                await asyncio.sleep(0)  # let some complete while others arrive
        responses = await asyncio.wait_for(asyncio.gather(*futures), 60)
        for i, (response, data) in enumerate(zip(responses, inputs, strict=True)):
            assert response.id == str(i)
            _check_echo(response, data)

    asyncio.run(main())
    executed = instances[0].executed_ids + instances[1].executed_ids
    assert sorted(executed, key=int) == [str(i) for i in range(count)]
    assert max(instances[0].request_counts + instances[1].request_counts) > 1


def test_callbacks_answer_each_request_exactly_once(make_model: ModelFactory) -> None:
    """Concurrent submitters and cancellers: every request gets one answer."""
    model = make_model(spec(8), batching((4,), 500), [EchoInstance(), EchoInstance()])
    calls: Counter[str] = Counter()
    outcomes: dict[str, str] = {}
    lock = threading.Lock()
    all_done = threading.Event()
    threads, per_thread = 8, 100
    total = threads * per_thread

    def answer(rid: str, result: object) -> None:
        with lock:
            calls[rid] += 1
            outcomes[rid] = type(result).__name__
            if len(calls) == total:
                all_done.set()

    def submitter(t: int) -> int:
        cancelled = 0
        for i in range(per_thread):
            rid = f"{t}-{i}"
            req = request(rid, rows(1, i))
            model.submit(req, lambda result, _final, rid=rid: answer(rid, result))
            if i % 5 == 0 and model.cancel(req):
                cancelled += 1
        return cancelled

    with ThreadPoolExecutor(threads) as pool:
        cancelled = sum(pool.map(submitter, range(threads)))
    assert all_done.wait(60)
    assert set(calls.values()) == {1}
    kinds = Counter(outcomes.values())
    assert kinds["CancelledError"] == cancelled
    assert kinds["Response"] == total - cancelled
    stats = model.statistics()
    assert stats["failures"]["CANCELED"] == cancelled
    assert stats["success"][0] == total - cancelled


def test_batches_formed_as_configured(make_model: ModelFactory) -> None:
    instance = EchoInstance()
    model = make_model(spec(8), batching((2, 4), 300_000), [instance])

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        blocker: asyncio.Future[_native.Response] = loop.create_future()
        # full: leaves at once
        model.submit(request("blocker", rows(8, 0)), _native.settle(blocker), loop)
        assert await asyncio.to_thread(instance.started.wait, 10)
        futures = []
        for i in range(5):
            future: asyncio.Future[_native.Response] = loop.create_future()
            model.submit(
                request(f"r{i}", rows(1, i)), _native.settle(future), future.get_loop()
            )
            futures.append(future)
        assert model.pending_count() == 5
        instance.release.set()
        await asyncio.wait_for(asyncio.gather(blocker, *futures), 30)
        return instance.batch_sizes

    # The largest preferred size (4) leaves as soon as the instance is free; the
    # fifth request waits out the queue delay alone.
    assert asyncio.run(main()) == [8, 4, 1]
    stats = model.statistics()
    assert stats["batch_stats"].keys() == {8, 4, 1}
    assert stats["inference_count"] == 13
    assert stats["execution_count"] == 3


def test_default_scheduler_runs_one_request_per_execution(
    make_model: ModelFactory,
) -> None:
    instance = EchoInstance()
    model = make_model(spec(8), _native.SchedulerConfig(), [instance])
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: model.infer(request(str(i), rows(2, i))), range(20)))
    assert instance.request_counts == [1] * 20
    stats = model.statistics()
    assert stats["execution_count"] == 20
    assert stats["inference_count"] == 40


def test_cancel_removes_queued_request(make_model: ModelFactory) -> None:
    instance = EchoInstance()
    model = make_model(spec(8), _native.SchedulerConfig(), [instance])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures = {rid: loop.create_future() for rid in ("blocker", "a", "b")}
        reqs = {rid: request(rid, rows(1, 0)) for rid in futures}
        model.submit(
            reqs["blocker"],
            _native.settle(futures["blocker"]),
            futures["blocker"].get_loop(),
        )
        assert await asyncio.to_thread(instance.started.wait, 10)
        model.submit(reqs["a"], _native.settle(futures["a"]), futures["a"].get_loop())
        model.submit(reqs["b"], _native.settle(futures["b"]), futures["b"].get_loop())
        assert model.cancel(reqs["a"]) is True
        assert model.cancel(reqs["a"]) is False
        assert reqs["a"].is_cancelled()
        with pytest.raises(errors.CancelledError, match="request cancelled"):
            await asyncio.wait_for(futures["a"], 10)
        assert model.pending_count() == 1
        instance.release.set()
        await asyncio.wait_for(futures["b"], 10)
        await asyncio.wait_for(futures["blocker"], 10)
        assert model.cancel(reqs["b"]) is False  # already answered

    asyncio.run(main())
    assert "a" not in instance.executed_ids
    stats = model.statistics()
    assert stats["failures"]["CANCELED"] == 1
    assert stats["success"][0] == 2


def test_stop_answers_queued_requests(make_model: ModelFactory) -> None:
    instance = EchoInstance()
    model = make_model(spec(8), batching((), 5_000_000), [instance])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(4)]
        model.submit(
            request("blocker", rows(8, 0)),
            _native.settle(futures[0]),
            futures[0].get_loop(),
        )
        assert await asyncio.to_thread(instance.started.wait, 10)
        for i, future in enumerate(futures[1:]):
            model.submit(
                request(f"q{i}", rows(1, i)), _native.settle(future), future.get_loop()
            )
        stopper = asyncio.create_task(asyncio.to_thread(model.stop))
        await asyncio.sleep(0.05)
        with pytest.raises(errors.UnavailableError):
            model.infer(request("late", rows(1, 0)))
        instance.release.set()
        await asyncio.wait_for(stopper, 10)
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            assert isinstance(result, _native.Response | errors.UnavailableError)

    asyncio.run(main())
    assert model.pending_count() == 0


def test_queue_timeout_rejects_while_instance_busy(make_model: ModelFactory) -> None:
    instance = EchoInstance()
    policy = _native.QueuePolicy("REJECT", default_timeout_us=50_000)
    model = make_model(spec(8), batching(default_queue_policy=policy), [instance])
    done = threading.Event()
    result: list[object] = []
    model.submit(request("blocker", rows(8, 0)), lambda r, _final: None)
    assert instance.started.wait(10)

    def late(r: object) -> None:
        result.append(r)
        done.set()

    model.submit(request("late", rows(1, 0)), lambda r, _final: late(r))
    assert done.wait(10)  # answered while the only instance is still blocked
    assert isinstance(result[0], errors.UnavailableError)
    assert str(result[0]) == "Request timeout expired"
    instance.release.set()
    assert model.statistics()["failures"]["REJECTED"] == 1


def test_max_queue_size_overflow_raises_unavailable(make_model: ModelFactory) -> None:
    instance = EchoInstance()
    policy = _native.QueuePolicy(max_queue_size=1)
    model = make_model(spec(8), batching(default_queue_policy=policy), [instance])
    model.submit(request("blocker", rows(8, 0)), lambda r, _final: None)
    assert instance.started.wait(10)
    model.submit(request("q1", rows(1, 0)), lambda r, _final: None)
    with pytest.raises(errors.UnavailableError, match="Exceeds maximum queue size"):
        model.submit(request("q2", rows(1, 0)), lambda r, _final: None)
    instance.release.set()


def test_priority_parameter_orders_execution(make_model: ModelFactory) -> None:
    instance = EchoInstance()
    config = _native.SchedulerConfig(priority_levels=2, default_priority_level=2)
    model = make_model(spec(8), config, [instance])
    done = threading.Semaphore(0)
    model.submit(request("blocker", rows(1, 0)), lambda r, _final: done.release())
    assert instance.started.wait(10)
    for rid, priority in (("low", 2), ("dflt", 0), ("high", 1)):
        req = request(rid, rows(1, 0), parameters={"priority": priority})
        assert req.priority == priority
        model.submit(req, lambda r, _final: done.release())
    instance.release.set()
    for _ in range(4):
        assert done.acquire(timeout=10)
    assert instance.executed_ids == ["blocker", "high", "low", "dflt"]


def test_native_load_generator_answers_every_request(make_model: ModelFactory) -> None:
    # The benchmarks' GIL-free clients: C++ threads keeping requests in flight.
    model = make_model(spec(8), batching((4,), 500), [EchoInstance()])
    inputs = [("INPUT0", "FP32", [1, 4], rows(1, 2.0))]
    result = _native.generate_load(model, inputs, 8, 0.3)
    assert result["failed"] == 0
    assert result["completed"] > 0
    stats = model.statistics()
    assert stats["success"][0] == result["completed"]
    assert stats["inference_count"] == result["completed"]
    assert stats["execution_count"] < result["completed"]  # batched
