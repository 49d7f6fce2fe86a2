"""``InferenceRequest``: what ``Model.infer`` sends, and its core request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tritonx.api._tensor import Tensor
from tritonx.errors import InvalidArgumentError

if TYPE_CHECKING:
    from tritonx.api._allocators import MemoryAllocator
    from tritonx.api._model import Model

_PARAMETER_TYPES = (str, int, float, bool)


@dataclass
class InferenceRequest:
    """One inference request (Triton's field names).

    ``inputs`` maps names to numpy arrays, ``Tensor``s, DLPack producers or lists
    (strings or bytes make BYTES tensors). ``output_names`` (a tritonx addition)
    asks for only these outputs; None: every output. ``timeout`` is in
    microseconds. ``output_memory_type`` (a ``DeviceOrMemoryType``: "cpu",
    MemoryType.CPU_PINNED, ...) and ``output_memory_allocator`` (a
    ``MemoryAllocator``) say where output bytes go; see ``_allocators``.
    """

    model: Model
    request_id: str | None = None
    flags: int = 0
    correlation_id: int | str | None = None
    priority: int = 0
    timeout: int = 0
    inputs: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, str | int | bool | float] = field(default_factory=dict)
    output_names: list[str] | None = None
    output_memory_type: Any = None
    output_memory_allocator: MemoryAllocator | None = None
    # Every response is also put here: a queue.SimpleQueue for infer(), an
    # asyncio.Queue for async_infer() (Triton's response_queue).
    response_queue: Any = None

    def _core_request(self) -> Any:
        """The ``_native.Request``; raises InvalidArgumentError for bad fields."""
        from tritonx import _native

        for key, value in self.parameters.items():
            if not isinstance(value, _PARAMETER_TYPES):
                raise InvalidArgumentError(
                    f"Invalid parameter type {type(value).__name__} for key '{key}'"
                )
        inputs = [
            Tensor._from_object(value)._core_input(name)
            for name, value in self.inputs.items()
        ]
        params: dict[str, Any] = dict(self.parameters)
        if self.priority:
            params["priority"] = int(self.priority)
        kwargs: dict[str, Any] = {"flags": int(self.flags), "timeout_us": self.timeout}
        if self.correlation_id is not None:
            kwargs["correlation_id"] = self.correlation_id
        # An empty list asks for every output.
        outputs = list(self.output_names or [])
        return _native.Request(self.request_id or "", inputs, outputs, params, **kwargs)
