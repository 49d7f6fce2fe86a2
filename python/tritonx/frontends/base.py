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


# Triton's extension names in its order (src/server.cc), limited to what tritonx
# implements; both frontends report this list in server metadata. Not listed:
# cuda_shared_memory (no GPU build: its calls answer as a CPU-only Triton's do),
# sequence.
SERVER_EXTENSIONS: tuple[str, ...] = (
    "classification",
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
