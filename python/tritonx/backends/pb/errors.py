"""pb_utils.TritonError / TritonModelException and their mapping to tritonx.errors."""

from __future__ import annotations

from typing import ClassVar

from tritonx import errors


class TritonModelException(Exception):
    """Raised by pb_utils calls that fail (and by models to fail a whole batch)."""


class TritonError:
    """An error a model attaches to one response: ``InferenceResponse(error=...)``."""

    # Same numbering as TRITONSERVER_Error_Code.
    UNKNOWN: ClassVar[int] = 0
    INTERNAL: ClassVar[int] = 1
    NOT_FOUND: ClassVar[int] = 2
    INVALID_ARG: ClassVar[int] = 3
    UNAVAILABLE: ClassVar[int] = 4
    UNSUPPORTED: ClassVar[int] = 5
    ALREADY_EXISTS: ClassVar[int] = 6
    CANCELLED: ClassVar[int] = 7

    __slots__ = ("_code", "_message")

    def __init__(self, message: str, code: int = 1) -> None:
        self._message = str(message)
        self._code = int(code)

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code

    def __repr__(self) -> str:
        return f"TritonError({self._message!r}, code={self._code})"

    def to_exception(self) -> errors.TritonXError:
        """The tritonx exception carrying the same code and message."""
        cls = _CODE_TO_CLASS.get(self._code, errors.UnknownError)
        return cls(self._message)


_CODE_TO_CLASS: dict[int, type[errors.TritonXError]] = {
    TritonError.UNKNOWN: errors.UnknownError,
    TritonError.INTERNAL: errors.InternalError,
    TritonError.NOT_FOUND: errors.NotFoundError,
    TritonError.INVALID_ARG: errors.InvalidArgumentError,
    TritonError.UNAVAILABLE: errors.UnavailableError,
    TritonError.UNSUPPORTED: errors.UnsupportedError,
    TritonError.ALREADY_EXISTS: errors.AlreadyExistsError,
    TritonError.CANCELLED: errors.CancelledError,
}
