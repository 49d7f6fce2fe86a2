"""``InferenceResponse`` and the iterators ``Model.infer`` / ``async_infer`` return.

The core calls back once per response and once more with FINAL (see
``_native.Model.submit``). ``ResponseIterator`` is fed on the core's delivering
thread through a ``queue.SimpleQueue`` (its ``get`` releases the GIL while
waiting); ``AsyncResponseIterator`` is fed on the caller's event loop through
``call_soon_threadsafe``. As in Triton, a FINAL that comes without data is one more
response, empty, with ``final=True`` (decoupled models usually end that way).
"""

from __future__ import annotations

import asyncio
import queue
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tritonx.api._tensor import Tensor
from tritonx.errors import TritonXError, as_triton_error

if TYPE_CHECKING:
    from tritonx.api._allocators import ResponseAllocator
    from tritonx.api._model import Model


@dataclass
class InferenceResponse:
    """One response: ``outputs`` by name, ``error`` (a TritonXError) or None,
    ``final`` True on the last response of the request."""

    model: Model
    request_id: str | None = None
    parameters: dict[str, str | int | bool | float] = field(default_factory=dict)
    outputs: dict[str, Tensor] = field(default_factory=dict)
    error: TritonXError | None = None
    classification_label: str | None = None
    final: bool = False

    @staticmethod
    def _from_core(
        model: Model,
        request_id: str,
        value: Any,
        final: bool,
        allocator: ResponseAllocator | None = None,
    ) -> InferenceResponse:
        if isinstance(value, BaseException):
            return InferenceResponse(
                model, request_id, error=as_triton_error(value), final=final
            )
        if value is None:
            return InferenceResponse(model, request_id, final=final)
        response_id = value.id or request_id
        place = Tensor._from_core if allocator is None else allocator.output
        try:
            outputs = {t.name: place(t) for t in value.outputs}
        except Exception as error:
            # An output that cannot be placed (the user's allocator failed, or
            # gave unusable memory) fails this response, not the process.
            return InferenceResponse(
                model, response_id, error=as_triton_error(error), final=final
            )
        return InferenceResponse(
            model,
            response_id,
            parameters=dict(value.parameters),
            outputs=outputs,
            final=final,
        )


class _ResponseStream:
    """What both iterators share: the request's identity, the error rule, the
    final flag, cancelling (``_cancel`` is set by Model once submitted) and
    delivery: each response goes to the iterator's own queue (``_queue``, a
    ``queue.SimpleQueue`` or an ``asyncio.Queue``; both have ``put_nowait``) and to
    the request's ``response_queue`` when it has one (Triton's)."""

    _queue: Any
    # Where outputs go; Model sets it before submitting.
    _allocator: ResponseAllocator | None = None

    def __init__(
        self,
        model: Model,
        request_id: str,
        raise_on_error: bool,
        user_queue: Any = None,
    ) -> None:
        self._model = model
        self._request_id = request_id
        self._raise_on_error = raise_on_error
        self._user_queue = user_queue
        self._done = False
        self._cancel: Any = None
        self._queue = self._new_queue()

    def _new_queue(self) -> Any:
        raise NotImplementedError

    def _on_response(self, value: Any, final: bool) -> None:
        response = InferenceResponse._from_core(
            self._model, self._request_id, value, final, self._allocator
        )
        self._queue.put_nowait(response)
        if self._user_queue is not None:
            self._user_queue.put_nowait(response)

    def _taken(self, response: InferenceResponse) -> InferenceResponse:
        self._done = response.final
        if response.error is not None and self._raise_on_error:
            raise response.error
        return response

    def cancel(self) -> None:
        if not self._done and self._cancel is not None:
            self._cancel()


class ResponseIterator(_ResponseStream):
    """Blocking iterator over a request's responses; ``cancel()`` cancels it."""

    def _new_queue(self) -> queue.SimpleQueue[InferenceResponse]:
        return queue.SimpleQueue()

    def __iter__(self) -> ResponseIterator:
        return self

    def __next__(self) -> InferenceResponse:
        if self._done:
            raise StopIteration
        return self._taken(self._queue.get())


class AsyncResponseIterator(_ResponseStream):
    """Async iterator over a request's responses, fed on the caller's loop."""

    def _new_queue(self) -> asyncio.Queue[InferenceResponse]:
        return asyncio.Queue()

    def __aiter__(self) -> AsyncResponseIterator:
        return self

    async def __anext__(self) -> InferenceResponse:
        if self._done:
            raise StopAsyncIteration
        return self._taken(await self._queue.get())

    def next_ready(self) -> InferenceResponse | None:
        """The next response if it has already arrived, else None (never waits);
        raises as ``__anext__`` does. A tritonx addition, for callers that write
        out everything ready at once (tritonx-openai's streams)."""
        if self._done:
            return None
        try:
            response = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        return self._taken(response)
