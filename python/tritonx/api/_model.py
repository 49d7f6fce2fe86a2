"""``Model``: one model (and version) of an in-process server.

Inference goes straight to the C++ core, as BLS does: ``registry.find`` picks the
version, ``_native.Model.submit`` validates and enqueues, and the core calls back
per response. Queries about the model (metadata, config, statistics) run on the
server's manager thread, which owns the repository state.
"""

from __future__ import annotations

import asyncio
import enum
import json
from typing import TYPE_CHECKING, Any

from tritonx.api._allocators import ResponseAllocator
from tritonx.api._request import InferenceRequest
from tritonx.api._response import AsyncResponseIterator, ResponseIterator
from tritonx.errors import InvalidArgumentError
from tritonx.repository.reports import INFERENCE_STATS_KEYS

if TYPE_CHECKING:
    from tritonx.api._server import Server


class ModelBatchFlag(enum.IntEnum):
    """Triton's ``TRITONSERVER_ModelBatchFlag`` members."""

    UNKNOWN = 1
    FIRST_DIM = 2


class ModelTxnPropertyFlag(enum.IntEnum):
    """Triton's ``TRITONSERVER_ModelTxnPropertyFlag`` members."""

    ONE_TO_ONE = 1
    DECOUPLED = 2


class Model:
    """A model of a started server; ``version`` -1 means the latest ready one."""

    def __init__(
        self,
        server: Server,
        name: str,
        version: int = -1,
        state: str | None = None,
        reason: str | None = None,
    ) -> None:
        server._running()  # InvalidArgumentError when not started
        self._server = server
        self.name = name
        self.version = version
        self.state = state
        self.reason = reason

    def __repr__(self) -> str:
        return repr({"name": self.name, "version": self.version, "state": self.state})

    @property
    def _version(self) -> str:
        return str(self.version) if self.version >= 0 else ""

    # -- inference ---------------------------------------------------------------

    def create_request(self, **kwargs: Any) -> InferenceRequest:
        """An ``InferenceRequest`` for this model (fields as keyword arguments)."""
        return InferenceRequest(model=self, **kwargs)

    def _submit(
        self,
        request: InferenceRequest,
        iterator: ResponseIterator | AsyncResponseIterator,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        running = self._server._running()
        core_model = running.registry.find(request.model.name, request.model._version)
        # Checked before anything is sent, as Triton checks it in infer().
        iterator._allocator = ResponseAllocator(
            request.output_memory_allocator, request.output_memory_type
        )
        core = request._core_request()
        core_model.submit(core, iterator._on_response, loop)
        iterator._cancel = lambda: core_model.cancel(core)

    def _request(
        self, request: InferenceRequest | None, kwargs: dict[str, Any]
    ) -> InferenceRequest:
        if request is None:
            return InferenceRequest(model=self, **kwargs)
        if kwargs:
            raise InvalidArgumentError(
                "pass either an InferenceRequest or its fields, not both"
            )
        return request

    def infer(
        self,
        inference_request: InferenceRequest | None = None,
        raise_on_error: bool = True,
        **kwargs: Any,
    ) -> ResponseIterator:
        """Send a request; iterate the result for its responses (several from a
        decoupled model, the last one ``final``). Invalid requests (unknown model,
        bad input name, shape or type) raise at once, as from Triton's
        ``infer``; ``raise_on_error`` raises errors the model answered with while
        iterating (else they are in ``response.error``)."""
        request = self._request(inference_request, kwargs)
        user_queue = request.response_queue
        if user_queue is not None and isinstance(user_queue, asyncio.Queue):
            raise InvalidArgumentError(
                "response_queue of infer() must be a queue.SimpleQueue (an "
                "asyncio.Queue goes with async_infer())"
            )
        iterator = ResponseIterator(
            self, request.request_id or "", raise_on_error, user_queue
        )
        self._submit(request, iterator, None)
        return iterator

    def async_infer(
        self,
        inference_request: InferenceRequest | None = None,
        raise_on_error: bool = True,
        **kwargs: Any,
    ) -> AsyncResponseIterator:
        """``infer`` for asyncio: must be called on a running loop; the responses
        arrive on that loop (``async for``)."""
        loop = asyncio.get_running_loop()
        request = self._request(inference_request, kwargs)
        user_queue = request.response_queue
        if user_queue is not None and not isinstance(user_queue, asyncio.Queue):
            raise InvalidArgumentError(
                "response_queue of async_infer() must be an asyncio.Queue"
            )
        iterator = AsyncResponseIterator(
            self, request.request_id or "", raise_on_error, user_queue
        )
        self._submit(request, iterator, loop)
        return iterator

    # -- queries -------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether this model (version) can serve; unknown models are not ready."""
        manager = self._server._running().manager
        return bool(manager.model_ready(self.name, self._version))

    def metadata(self) -> dict[str, Any]:
        manager = self._server._running().manager
        result: dict[str, Any] = self._server._query(
            manager.metadata, self.name, self._version
        )
        return result

    def config(self, config_version: int = 1) -> dict[str, Any]:
        """The model configuration as Triton's JSON (``config_version`` 1 only)."""
        from tritonx.config import config_to_json

        if config_version != 1:
            raise InvalidArgumentError(
                f"model config version {config_version} is not supported"
            )
        result: dict[str, Any] = json.loads(config_to_json(self._config_proto()))
        return result

    def batch_properties(self) -> ModelBatchFlag:
        """FIRST_DIM when the model batches along its first dimension
        (max_batch_size > 0), else UNKNOWN, as Triton's core answers."""
        config = self._config_proto()
        if config.max_batch_size > 0:
            return ModelBatchFlag.FIRST_DIM
        return ModelBatchFlag.UNKNOWN

    def transaction_properties(self) -> ModelTxnPropertyFlag:
        """DECOUPLED for a decoupled model, else ONE_TO_ONE."""
        config = self._config_proto()
        if config.model_transaction_policy.decoupled:
            return ModelTxnPropertyFlag.DECOUPLED
        return ModelTxnPropertyFlag.ONE_TO_ONE

    def _config_proto(self) -> Any:
        manager = self._server._running().manager
        return self._server._query(manager.config, self.name, self._version)

    def statistics(self) -> dict[str, Any]:
        """``{"model_stats": [...]}`` as the statistics extension answers."""
        manager = self._server._running().manager
        stats: list[dict[str, Any]] = self._server._query(
            manager.statistics, self.name, self._version
        )
        for entry in stats:
            inference = entry.setdefault("inference_stats", {})
            for key in INFERENCE_STATS_KEYS:
                inference.setdefault(key, {"count": 0, "ns": 0})
            entry["version"] = str(entry.get("version", ""))
        return {"model_stats": stats}
