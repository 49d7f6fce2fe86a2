"""The contract every protocol frontend (HTTP, gRPC) implements for the server."""

from __future__ import annotations

from typing import Protocol


class Frontend(Protocol):
    """A listening protocol endpoint owned by ``tritonx.server.Server``."""

    async def start(self) -> int:
        """Bind and start serving; returns the bound port (useful with port 0)."""
        ...

    async def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish within ``grace`` seconds,
        then close every connection."""
        ...


# Triton's extension names in its order (src/server.cc); both frontends report
# `server_extensions()` in server metadata.
SERVER_EXTENSIONS: tuple[str, ...] = (
    "classification",
    "sequence",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "model_configuration",
    "system_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "logging",
)


def server_extensions() -> tuple[str, ...]:
    """SERVER_EXTENSIONS, plus cuda_shared_memory where this build has CUDA and the
    machine a usable GPU (elsewhere its calls answer as a CPU-only Triton's do)."""
    from tritonx import _native

    if not _native.cuda_usable():
        return SERVER_EXTENSIONS
    at = SERVER_EXTENSIONS.index("system_shared_memory") + 1
    return (*SERVER_EXTENSIONS[:at], "cuda_shared_memory", *SERVER_EXTENSIONS[at:])
