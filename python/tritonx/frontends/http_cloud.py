"""What tritonserver's cloud endpoints (SageMaker, Vertex AI) have in common.

Both are a second HTTP listener whose inference path reaches the KServe v2 infer
handler of ``HttpFrontend`` with the body framed another way (tritonserver 2.51:
``GetInferenceHeaderLength`` overridden, compression off):

* the size of the JSON header of a binary body comes from the content type
  ``<vendor MIME>;json-header-size=<N>`` (N read as C's ``atoi``), never from
  ``Inference-Header-Content-Length``;
* request bodies are never inflated, responses never compressed;
* the errors found before the body is read (unknown model, decoupled model, header
  size) are answered without a content type of their own, so ``text/plain``.

``CloudFrontend`` carries that inference path; each endpoint adds its routes.
"""

from __future__ import annotations

import re
from typing import ClassVar

from tritonx import _native
from tritonx.errors import InvalidArgumentError, TritonXError
from tritonx.frontends.http import HttpFrontend
from tritonx.frontends.http_message import HttpMessage, Slot
from tritonx.frontends.http_responses import TEXT, Buffer, dumps, response
from tritonx.frontends.http_routes import Route

_HEADER_LENGTH = b"inference-header-content-length"
_LEADING_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def c_atoi(text: str) -> int:
    """C's ``atoi`` as glibc computes it: leading blanks, a sign and digits; 0 when
    none; a value beyond ``long`` saturates and is then cut to 32 bits."""
    match = _LEADING_INT.match(text)
    if match is None:
        return 0
    value = max(min(int(match.group(1)), (1 << 63) - 1), -(1 << 63)) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def binary_header_length(
    content_type: bytes | None, content_length: int, mime: str
) -> int:
    """Bytes of JSON at the start of a body: N of ``<mime>N`` in the content type,
    else the whole body. 0 makes the body the raw bytes of the model's only input.
    Raises InvalidArgumentError in tritonserver's words."""
    if content_type is None:
        return content_length
    position = content_type.find(mime.encode())
    if position < 0:
        return content_length
    text = content_type.decode("latin-1")
    if position != 0:
        raise InvalidArgumentError(
            f"expect MIME type for binary data starts with '{mime}', got: {text}"
        )
    rest = text[len(mime) :]
    value = c_atoi(rest)
    if value < 0 or value > content_length:
        raise InvalidArgumentError(
            f"inference header size should be in range (0, {content_length}), "
            f"got: {rest}"
        )
    return value


def error_body(exc: BaseException) -> tuple[int, bytes]:
    """The HTTP status and ``{"error": ...}`` body of an exception."""
    if isinstance(exc, TritonXError):
        return exc.http_status, dumps({"error": exc.message})
    return 500, dumps({"error": str(exc) or type(exc).__name__})


def plain_error(exc: BaseException) -> list[Buffer]:
    """An error the way tritonserver answers before it has read the body: its JSON
    body without a content type of its own (so libevhtp's text/plain)."""
    status, body = error_body(exc)
    return response(status, body, TEXT)


def rebuilt(
    message: HttpMessage,
    method: bytes | None = None,
    headers: dict[bytes, bytes] | None = None,
) -> HttpMessage:
    """A copy of ``message`` with another method or other headers."""
    copy = HttpMessage()
    copy.method = message.method if method is None else method
    copy.url = message.url
    copy.headers = message.headers if headers is None else headers
    copy.raw_headers = message.raw_headers
    copy.body = message.body
    copy.keep_alive = message.keep_alive
    return copy


class CloudFrontend(HttpFrontend):
    """An ``HttpFrontend`` whose inference requests frame binary bodies with the
    content type ``BINARY_MIME<N>``; subclasses route their paths to ``_invoke``."""

    DECOMPRESS_REQUESTS = False
    BINARY_MIME: ClassVar[str] = ""

    def _json_size(self, headers: dict[bytes, bytes], body_size: int) -> int | None:
        try:
            return binary_header_length(
                headers.get(b"content-type"), body_size, self.BINARY_MIME
            )
        except TritonXError:
            return None  # refused with its own words when the body is handled

    def _invoke(
        self, message: HttpMessage, slot: Slot, model: str, version: str = ""
    ) -> None:
        """Inference on ``model`` (``version``; "" is the latest) through the HTTP
        frontend's infer handler, with the body framed the endpoint's way."""
        if message.method != b"POST":
            slot.done(response(405, b'{"error":"Method Not Allowed"}', TEXT))
            return
        try:
            # The checks tritonserver makes before reading the body.
            found = self._registry.find(model, version)
            _native.check_transaction_policy(found, "http")
            size = binary_header_length(
                message.headers.get(b"content-type"),
                len(message.body),
                self.BINARY_MIME,
            )
        except Exception as exc:
            slot.done(plain_error(exc))
            return
        self._infer_framed(message, slot, model, version, size)

    def _infer_framed(
        self, message: HttpMessage, slot: Slot, model: str, version: str, size: int
    ) -> None:
        """The KServe infer route for a body framed the endpoint's way (``size``:
        bytes of JSON at its start, 0 for a raw body)."""
        headers = {
            key: value
            for key, value in message.headers.items()
            if key not in (_HEADER_LENGTH, b"accept-encoding")
        }
        if size != len(message.body) or size == 0:  # 0: a raw body
            headers[_HEADER_LENGTH] = b"%d" % size
        self._infer(
            rebuilt(message, headers=headers), slot, Route("infer", model, version)
        )
