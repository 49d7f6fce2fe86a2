"""Errors raised or returned by an instance's execute, and validation errors, as
tritonx.errors classes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
from coreutil import ModelFactory, OutputMap, batching, request, rows, spec

from tritonx import _native, errors


class PerRequestErrors:
    """Answers each request according to its id: ok, value (a plain exception),
    invalid (a TritonXError), or junk (not a mapping)."""

    gather_inputs = False

    def execute(self, requests: list[_native.Request]) -> list[Any]:
        out: list[Any] = []
        for r in requests:
            if r.id.startswith("value"):
                out.append(ValueError("plain failure"))
            elif r.id.startswith("invalid"):
                out.append(errors.InvalidArgumentError("bad input from backend"))
            elif r.id.startswith("junk"):
                out.append(42)
            elif r.id.startswith("badout"):
                out.append({"OUTPUT0": np.zeros(4, dtype=np.complex64)})
            else:
                out.append({"OUTPUT0": r.inputs[0].as_numpy()})
        return out


class RaisingInstance:
    """Raises from execute for the whole batch."""

    gather_inputs = False

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.batches: list[list[str]] = []

    def execute(self, requests: list[_native.Request]) -> list[OutputMap]:
        self.batches.append([r.id for r in requests])
        raise self.exc


class ShortInstance:
    """Returns one response fewer than it was given requests."""

    gather_inputs = False

    def execute(self, requests: list[_native.Request]) -> list[OutputMap]:
        return [{"OUTPUT0": r.inputs[0].as_numpy()} for r in requests[1:]]


def test_per_request_errors_map_to_error_classes(make_model: ModelFactory) -> None:
    model = make_model(spec(8), batching((), 0), [PerRequestErrors()])
    assert isinstance(model.infer(request("ok", rows(1, 0))), _native.Response)
    with pytest.raises(errors.InternalError, match="plain failure"):
        model.infer(request("value", rows(1, 0)))
    with pytest.raises(errors.InvalidArgumentError, match="bad input from backend"):
        model.infer(request("invalid", rows(1, 0)))
    with pytest.raises(errors.InternalError, match="mapping of output name"):
        model.infer(request("junk", rows(1, 0)))
    with pytest.raises(errors.InvalidArgumentError, match="unsupported numpy dtype"):
        model.infer(request("badout", rows(1, 0)))
    # As in Triton, error *responses* from a model that ran count as successes; only
    # a failed execution counts as a BACKEND failure.
    stats = model.statistics()
    assert stats["failures"]["BACKEND"] == 0
    assert stats["success"][0] == 5


def test_per_request_errors_within_one_batch(make_model: ModelFactory) -> None:
    """One batch, mixed outcomes: each request gets its own."""
    blocker = threading.Event()

    class Gated(PerRequestErrors):
        def execute(self, requests: list[_native.Request]) -> list[Any]:
            if requests[0].id == "block":
                blocker.wait(10)
            return super().execute(requests)

    model = make_model(spec(8), batching((), 0), [Gated()])

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        first: asyncio.Future[_native.Response] = loop.create_future()
        model.submit(
            request("block", rows(8, 0)), _native.settle(first), first.get_loop()
        )
        await asyncio.sleep(0.05)
        futures = []
        for rid in ("ok1", "value1", "invalid1", "ok2"):
            future: asyncio.Future[_native.Response] = loop.create_future()
            model.submit(
                request(rid, rows(1, 0)), _native.settle(future), future.get_loop()
            )
            futures.append(future)
        blocker.set()
        await first
        return await asyncio.gather(*futures, return_exceptions=True)

    ok1, value1, invalid1, ok2 = asyncio.run(main())
    assert isinstance(ok1, _native.Response)
    assert isinstance(value1, errors.InternalError)
    assert isinstance(invalid1, errors.InvalidArgumentError)
    assert isinstance(ok2, _native.Response)
    assert model.statistics()["batch_stats"].get(4, (0,))[0] == 1


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError("whole batch failed"), errors.InternalError),
        (errors.UnavailableError("backend busy"), errors.UnavailableError),
        (errors.UnsupportedError("not here"), errors.UnsupportedError),
    ],
)
def test_whole_batch_raise_fails_every_request(
    make_model: ModelFactory, exc: BaseException, expected: type[errors.TritonXError]
) -> None:
    instance = RaisingInstance(exc)
    model = make_model(spec(8), batching((4,), 200_000), [instance])

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = []
        for i in range(4):
            future: asyncio.Future[_native.Response] = loop.create_future()
            model.submit(
                request(f"r{i}", rows(1, i)), _native.settle(future), future.get_loop()
            )
            futures.append(future)
        return await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), 10
        )

    results = asyncio.run(main())
    for result in results:
        assert type(result) is expected
        assert str(result) == str(exc)
    assert instance.batches == [["r0", "r1", "r2", "r3"]]
    stats = model.statistics()
    assert stats["failures"]["BACKEND"] == 4
    assert stats["execution_count"] == 1
    assert stats["inference_count"] == 0  # a failed execution performs no inferences


def test_wrong_response_count_is_internal(make_model: ModelFactory) -> None:
    model = make_model(spec(8), _native.SchedulerConfig(), [ShortInstance()])
    with pytest.raises(
        errors.InternalError, match="returned 0 responses for 1 requests"
    ):
        model.infer(request("r", rows(1, 0)))


def test_validation_errors_raise_synchronously(make_model: ModelFactory) -> None:
    model = make_model(spec(8), _native.SchedulerConfig(), [PerRequestErrors()])
    with pytest.raises(
        errors.InvalidArgumentError, match="batch-size must be <= 8 for 'm'"
    ):
        model.infer(request("big", rows(9, 0)))

    async def main() -> None:
        future: asyncio.Future[_native.Response] = (
            asyncio.get_running_loop().create_future()
        )
        with pytest.raises(errors.InvalidArgumentError, match="unexpected shape"):
            model.submit(
                request("shape", rows(1, 0, width=3)),
                _native.settle(future),
                future.get_loop(),
            )
        assert not future.done()

    asyncio.run(main())
    with pytest.raises(errors.InvalidArgumentError, match="unexpected inference input"):
        model.infer(request("name", rows(1, 0), name="WRONG"))
    with pytest.raises(errors.InvalidArgumentError, match="reserved for Triton usage"):
        request("param", rows(1, 0), parameters={"triton_x": 1})
    with pytest.raises(errors.InvalidArgumentError, match="data-type is 'INT32'"):
        model.infer(
            _native.Request(
                "dt", [("INPUT0", "INT32", [1, 4], np.zeros((1, 4), np.int32))]
            )
        )


def test_errors_have_triton_codes() -> None:
    assert errors.error_from_code("UNAVAILABLE", "x").code == "UNAVAILABLE"
    assert errors.UnavailableError("x").http_status == 503
    assert errors.InvalidArgumentError("x").grpc_code == "INVALID_ARGUMENT"
