"""HTTP/1.1 responses as the Python engine writes them: status lines (reason
phrases from the core's table, shared with the native engine), complete responses
as buffers, Triton's error bodies and compact JSON."""

from __future__ import annotations

import json
from typing import Any

from tritonx import _native
from tritonx.errors import TritonXError

Buffer = bytes | bytearray | memoryview

# Status lines as sent, filled on first use (reason phrases: the core's table,
# shared with the native engine).
_STATUS_LINES: dict[int, bytes] = {}
JSON = b"application/json"
TEXT = b"text/plain"
OCTETS = b"application/octet-stream"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        reason = _native.http_messages.reason_phrase(status)
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason}\r\n".encode()
    return line


def response(
    status: int,
    body: Buffer = b"",
    content_type: bytes | None = JSON,
    extra_headers: bytes = b"",
) -> list[Buffer]:
    """A complete response as buffers to write (head first)."""
    head = [status_line(status)]
    if content_type is not None:
        head.append(b"Content-Type: " + content_type + b"\r\n")
    head.append(extra_headers)
    head.append(b"Content-Length: %d\r\n\r\n" % len(body))
    if not body:
        return [b"".join(head)]
    return [b"".join(head), body]


def error_response(
    status: int,
    message: str,
    extra_headers: bytes = b"",
    content_type: bytes = JSON,
) -> list[Buffer]:
    # Triton's bytes: compact JSON, UTF-8 as it is.
    text = json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":"))
    return response(status, text.encode(), content_type, extra_headers)


def dumps(obj: Any) -> bytes:
    """Compact JSON, UTF-8 as it is (Triton's bytes)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def exception_status(exc: BaseException) -> tuple[int, str]:
    """An exception's HTTP status and message: a ``TritonXError``'s, else 500."""
    if isinstance(exc, TritonXError):
        return exc.http_status, exc.message
    return 500, str(exc) or type(exc).__name__


def exception_response(exc: BaseException, content_type: bytes = JSON) -> list[Buffer]:
    """The error response for an exception (``exception_status``)."""
    status, message = exception_status(exc)
    return error_response(status, message, b"", content_type)
