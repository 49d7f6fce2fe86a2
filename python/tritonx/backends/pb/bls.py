"""Business Logic Scripting: ``InferenceRequest.exec()`` from inside ``execute``.

The server hands its ``ModelRegistry`` to ``set_model_registry`` at start; a BLS call
then runs the target model through the core like any client request (``Model.infer``
blocks with the GIL released). As in Triton, a model calling itself with a single
instance deadlocks, and errors come back as responses with ``error()`` set.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tritonx.backends.pb.dtypes import serialize_byte_tensor
from tritonx.backends.pb.errors import TritonError, TritonModelException
from tritonx.backends.pb.messages import (
    TRITONSERVER_REQUEST_FLAG_SEQUENCE_END,
    TRITONSERVER_REQUEST_FLAG_SEQUENCE_START,
    InferenceRequest,
    InferenceResponse,
)
from tritonx.backends.pb.tensor import Tensor
from tritonx.errors import as_triton_error

_registry: Any = None

_CODE_NUMBERS = {
    "UNKNOWN": TritonError.UNKNOWN,
    "INTERNAL": TritonError.INTERNAL,
    "NOT_FOUND": TritonError.NOT_FOUND,
    "INVALID_ARG": TritonError.INVALID_ARG,
    "UNAVAILABLE": TritonError.UNAVAILABLE,
    "UNSUPPORTED": TritonError.UNSUPPORTED,
    "ALREADY_EXISTS": TritonError.ALREADY_EXISTS,
    "CANCELLED": TritonError.CANCELLED,
}


def set_model_registry(registry: Any) -> None:
    """Make ``registry`` (a ``tritonx._native.ModelRegistry``) reachable by BLS."""
    global _registry
    _registry = registry


def _core_request(request: InferenceRequest) -> Any:
    from tritonx._native import Request

    inputs = []
    for t in request.inputs():
        array = t.as_numpy()
        data: Any = serialize_byte_tensor(array) if t.datatype() == "BYTES" else array
        inputs.append((t.name(), t.datatype(), list(array.shape), data))
    params: dict[str, Any] = dict(_loads(request.parameters()))
    # The core takes sequence and timeout controls out of the parameters.
    if request.correlation_id():
        params["sequence_id"] = request.correlation_id()
        flags = request.flags()
        params["sequence_start"] = bool(
            flags & TRITONSERVER_REQUEST_FLAG_SEQUENCE_START
        )
        params["sequence_end"] = bool(flags & TRITONSERVER_REQUEST_FLAG_SEQUENCE_END)
    if request.timeout():
        params["timeout"] = request.timeout()
    return Request(
        id=request.request_id(),
        inputs=inputs,
        requested_outputs=sorted(request.requested_output_names()),
        parameters=params,
    )


def _loads(text: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def execute_bls(
    request: InferenceRequest, decoupled: bool = False
) -> InferenceResponse:
    if decoupled:
        raise TritonModelException("decoupled BLS calls are not supported by tritonx")
    if _registry is None:
        raise TritonModelException("BLS is unavailable: no model registry is set")
    version = request.model_version()
    try:
        model = _registry.find(
            request.model_name(), str(version) if version > 0 else ""
        )
        response = model.infer(_core_request(request))
    except Exception as exc:
        err = as_triton_error(exc)
        return InferenceResponse(
            error=TritonError(err.message, _CODE_NUMBERS.get(err.code, 0))
        )
    tensors = [Tensor._from_core(t) for t in response.outputs]
    return InferenceResponse(tensors, parameters=dict(response.parameters))


async def execute_bls_async(
    request: InferenceRequest, decoupled: bool = False
) -> InferenceResponse:
    # infer() releases the GIL, so a worker thread lets other coroutines run.
    return await asyncio.to_thread(execute_bls, request, decoupled)
