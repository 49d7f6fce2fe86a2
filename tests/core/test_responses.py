"""Model.submit's response stream in Python: every response then FINAL, on the
caller's loop or on core threads, and the `responses` async iterator."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from coreutil import ModelFactory, request, rows

from tritonx import _native, errors


def decoupled_spec() -> _native.ModelSpec:
    return _native.ModelSpec(
        "stream",
        1,
        8,
        [_native.TensorSpec("INPUT0", "FP32", [4])],
        [_native.TensorSpec("OUTPUT0", "FP32", [4])],
        decoupled=True,
    )


class RepeatInstance:
    """Decoupled: answers each request with INPUT0[0] copies of its input (sent from a
    thread after execute returns), an error in the middle when asked, then FINAL."""

    gather_inputs = False

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def execute(self, requests: list[_native.Request]) -> None:
        for req in requests:
            data = req.inputs[0].as_numpy().copy()
            thread = threading.Thread(target=self._send, args=(req, data))
            thread.start()
            self.threads.append(thread)

    @staticmethod
    def _send(req: _native.Request, data: Any) -> None:
        count = int(data[0][0])
        for i in range(count):
            if req.is_cancelled():
                break
            if data[0][1] == 1 and i == 1:
                _native.send_response(req, errors.InternalError("mid-stream"), False)
            else:
                _native.send_response(req, {"OUTPUT0": data + i}, False)
        _native.send_response(req, None, True)


def test_async_iterator_yields_every_response(make_model: ModelFactory) -> None:
    instance = RepeatInstance()
    model = make_model(decoupled_spec(), _native.SchedulerConfig(), [instance])

    async def main() -> list[Any]:
        data = rows(1, 0.0)
        data[0][0] = 4
        return [r async for r in _native.responses(model, request("a", data))]

    got = asyncio.run(main())
    assert [float(r.outputs[0].as_numpy()[0][0]) for r in got] == [4, 5, 6, 7]
    for thread in instance.threads:
        thread.join()


def test_errors_arrive_in_the_stream_and_it_goes_on(make_model: ModelFactory) -> None:
    instance = RepeatInstance()
    model = make_model(decoupled_spec(), _native.SchedulerConfig(), [instance])

    async def main() -> list[Any]:
        data = rows(1, 0.0)
        data[0][0], data[0][1] = 3, 1
        return [r async for r in _native.responses(model, request("a", data))]

    got = asyncio.run(main())
    assert isinstance(got[1], errors.InternalError)
    assert [type(r).__name__ for r in got] == ["Response", "InternalError", "Response"]
    for thread in instance.threads:
        thread.join()


def test_on_core_threads_without_a_loop(make_model: ModelFactory) -> None:
    instance = RepeatInstance()
    model = make_model(decoupled_spec(), _native.SchedulerConfig(), [instance])
    seen: list[tuple[Any, bool]] = []
    done = threading.Event()

    def on_response(value: Any, final: bool) -> None:
        seen.append((value, final))
        if final:
            done.set()

    data = rows(1, 0.0)
    data[0][0] = 2
    model.submit(request("a", data), on_response)
    assert done.wait(10)
    assert [final for _, final in seen] == [False, False, True]
    assert seen[-1][0] is None  # FINAL alone
    for thread in instance.threads:
        thread.join()
    assert model.inflight_count() == 0


def test_leaving_the_iterator_early_cancels_the_request(
    make_model: ModelFactory,
) -> None:
    instance = RepeatInstance()
    model = make_model(decoupled_spec(), _native.SchedulerConfig(), [instance])

    async def main() -> int:
        data = rows(1, 0.0)
        data[0][0] = 1_000_000
        req = request("a", data)
        taken = 0
        async for _ in _native.responses(model, req):
            taken += 1
            if taken == 3:
                break
        return taken

    assert asyncio.run(main()) == 3
    for thread in instance.threads:
        thread.join(timeout=30)  # the sender saw is_cancelled() and stopped
        assert not thread.is_alive()
