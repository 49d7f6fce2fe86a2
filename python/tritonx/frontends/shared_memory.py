"""Triton's shared memory extensions: the control plane both frontends share.

System shared memory regions live in the C++ ``SharedMemoryRegistry`` of the
server's ``ServerContext`` (``context.shared_memory``), which the C++ infer paths
(gRPC, native HTTP) read directly; the control RPCs and routes land here. CUDA
shared memory needs a GPU build, which tritonx does not have: its calls answer as a
CPU-only tritonserver does (status lists nothing, register fails "GPUs not
supported", unregister succeeds).

Messages, codes and their order follow Triton 2.51 (src/shared_memory_manager.cc and
the HTTP/gRPC handlers), checked against the real server.
"""

from __future__ import annotations

import logging
from typing import Any

from tritonx.errors import (
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    UnsupportedError,
)

logger = logging.getLogger("tritonx.shared_memory")

DISALLOWED = (
    "client shared memory is disabled on this server (--allow-client-shm=false)"
)
UINT64_MAX = 2**64 - 1


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
        if not self.registry.allowed:
            raise UnsupportedError(DISALLOWED)
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

    # -- CUDA (no GPU support in this build) ---------------------------------------

    def cuda_status(self, name: str = "") -> list[dict[str, Any]]:
        if not name:
            return []
        if name in self.registry:
            raise NotFoundError(
                f"The region named '{name}' is registered as system shared memory, "
                "not CUDA shared memory"
            )
        raise NotFoundError(f"Unable to find cuda shared memory region: '{name}'")

    @staticmethod
    def cuda_register(name: str) -> None:
        raise InvalidArgumentError(
            f"failed to register CUDA shared memory region: '{name}', GPUs not "
            "supported"
        )


# -- HTTP bodies ------------------------------------------------------------------------


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


def http_cuda_register(region: str) -> None:
    if not region:
        raise InvalidArgumentError(
            "'region name' is necessary to register cuda shared memory region"
        )
    SharedMemoryControl.cuda_register(region)
