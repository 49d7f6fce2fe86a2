"""Triton's shared memory extensions: the control plane both frontends share.

System and CUDA shared memory regions live in the C++ ``SharedMemoryRegistry`` of
the server's ``ServerContext`` (``context.shared_memory``), which the C++ infer
paths (gRPC, native HTTP) read directly; the control RPCs and routes land here.
CUDA regions need a CUDA build and a usable GPU; elsewhere their calls answer as a
CPU-only tritonserver does (status lists nothing, register fails "GPUs not
supported", unregister succeeds).

Messages, codes and their order follow Triton 2.51 (src/shared_memory_manager.cc and
the HTTP/gRPC handlers), checked against the real server.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from tritonx.errors import (
    InternalError,
    InvalidArgumentError,
)

logger = logging.getLogger("tritonx.shared_memory")

UINT64_MAX = 2**64 - 1
CUDA_IPC_HANDLE_BYTES = 64  # sizeof(cudaIpcMemHandle_t)


def default_registry() -> Any:
    """A registry of its own, for frontends built without a server context."""
    from tritonx import _native

    return _native.ServerContext().shared_memory


class SharedMemoryControl:
    """Status, register and unregister for system and CUDA shared memory."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    # -- system ---------------------------------------------------------------------

    def system_status(self, name: str = "") -> list[dict[str, Any]]:
        return list(self.registry.status(name))

    def system_register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        # Refused (UNSUPPORTED) by the registry itself while --allow-client-shm=false.
        self.registry.register(name, key, offset, byte_size)
        logger.debug(
            "registered system shared memory region '%s' (key '%s', offset %d, "
            "%d bytes)",
            name,
            key,
            offset,
            byte_size,
        )

    def system_unregister(self, name: str = "") -> None:
        self.registry.unregister(name)
        logger.debug("unregistered system shared memory region '%s'", name or "*")

    # -- CUDA (register refuses without a CUDA build and a GPU) ---------------------

    def cuda_status(self, name: str = "") -> list[dict[str, Any]]:
        return list(self.registry.status(name, cuda=True))

    def cuda_register(
        self, name: str, raw_handle: bytes, device_id: int, byte_size: int
    ) -> None:
        # Refused (UNSUPPORTED) by the registry itself while --allow-client-shm=false.
        self.registry.register_cuda(name, raw_handle, device_id, byte_size)
        logger.debug(
            "registered CUDA shared memory region '%s' (device %d, %d bytes)",
            name,
            device_id,
            byte_size,
        )

    def cuda_unregister(self, name: str = "") -> None:
        self.registry.unregister(name, cuda=True)
        logger.debug("unregistered CUDA shared memory region '%s'", name or "*")


# -- HTTP bodies ------------------------------------------------------------------------


def _member(doc: Any, key: str) -> Any:
    if not isinstance(doc, dict) or key not in doc:
        raise InternalError(f"attempt to access non-existing object member '{key}'")
    return doc[key]


def _unsigned(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= UINT64_MAX:
        raise InternalError(
            "attempt to access JSON non-unsigned-integer as unsigned-integer"
        )
    return value


def http_system_register(control: SharedMemoryControl, region: str, doc: Any) -> None:
    """POST /v2/systemsharedmemory/region/{region}/register with its parsed body."""
    if not region:
        raise InvalidArgumentError(
            "'region name' is necessary to register system shared memory region"
        )
    fields = doc if isinstance(doc, dict) else {}
    if "key" not in fields:
        raise InvalidArgumentError("Shared memory register request has no 'key' field")
    key = fields["key"]
    if not isinstance(key, str):
        raise InternalError("attempt to access JSON non-string as string")
    offset = _unsigned(fields["offset"]) if "offset" in fields else 0
    if "byte_size" not in fields:
        raise InvalidArgumentError(
            "Shared memory register request has no 'byte_size' field"
        )
    control.system_register(region, key, offset, _unsigned(fields["byte_size"]))


def http_cuda_register(control: SharedMemoryControl, region: str, doc: Any) -> None:
    """POST /v2/cudasharedmemory/region/{region}/register with its parsed body:
    ``{"raw_handle": {"b64": ...}, "device_id": ..., "byte_size": ...}``."""
    if not region:
        raise InvalidArgumentError(
            "'region name' is necessary to register cuda shared memory region"
        )
    fields = doc if isinstance(doc, dict) else {}
    if "raw_handle" not in fields:
        raise InvalidArgumentError(
            "Shared memory register request has no 'raw_handle' field"
        )
    handle = fields["raw_handle"]
    b64 = _member(handle, "b64")
    if not isinstance(b64, str):
        raise InternalError("attempt to access JSON non-string as string")
    byte_size = _unsigned(_member(fields, "byte_size"))
    device_id = _unsigned(_member(fields, "device_id"))
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != CUDA_IPC_HANDLE_BYTES:
        raise InvalidArgumentError(
            "'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t"
        )
    control.cuda_register(region, raw, device_id, byte_size)
