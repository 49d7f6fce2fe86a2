"""Protocol frontends (HTTP/REST and gRPC) over the shared model registry.

Submodules are imported on demand (``tritonx.frontends.http``, ``...grpc``) so that
importing this package stays cheap and does not need the compiled core.
"""

from __future__ import annotations

from tritonx.frontends.base import SERVER_EXTENSIONS, Frontend

__all__ = ["SERVER_EXTENSIONS", "Frontend"]
