"""pb_utils.TritonError / TritonModelException and their mapping to tritonx.errors."""

from __future__ import annotations

import enum
from typing import ClassVar

from tritonx import errors
from tritonx.backends.pb import binding_args


class TritonModelException(Exception):
    """Raised by pb_utils calls that fail (and by models to fail a whole batch)."""


class ErrorCode(enum.IntEnum):
    """``TritonError``'s codes (TRITONSERVER_Error_Code's numbering). An int enum
    so a code still compares with numbers, while the constructor, like Triton's
    binding, takes only these members."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    # Shown as Triton's binding shows its enum (a model may log or format a code).
    def __str__(self) -> str:
        return f"__ErrorCode.{self.name}"

    def __repr__(self) -> str:
        return f"<__ErrorCode.{self.name}: {self.value}>"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


_SIGNATURE = (
    "c_python_backend_utils.TritonError(message: str, code: "
    "c_python_backend_utils.TritonError.__ErrorCode = <__ErrorCode.INTERNAL: 1>)"
)


class TritonError:
    """An error a model attaches to one response: ``InferenceResponse(error=...)``."""

    UNKNOWN: ClassVar[ErrorCode] = ErrorCode.UNKNOWN
    INTERNAL: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    NOT_FOUND: ClassVar[ErrorCode] = ErrorCode.NOT_FOUND
    INVALID_ARG: ClassVar[ErrorCode] = ErrorCode.INVALID_ARG
    UNAVAILABLE: ClassVar[ErrorCode] = ErrorCode.UNAVAILABLE
    UNSUPPORTED: ClassVar[ErrorCode] = ErrorCode.UNSUPPORTED
    ALREADY_EXISTS: ClassVar[ErrorCode] = ErrorCode.ALREADY_EXISTS
    CANCELLED: ClassVar[ErrorCode] = ErrorCode.CANCELLED

    __slots__ = ("_code", "_message")

    def __init__(self, message: str, code: ErrorCode = ErrorCode.INTERNAL) -> None:
        if not isinstance(message, str) or not isinstance(code, ErrorCode):
            raise binding_args.incompatible(
                "__init__", _SIGNATURE, [repr(message), repr(code)], constructor=True
            )
        self._message = message
        self._code = code

    @classmethod
    def _with_code(cls, message: str, code: int) -> TritonError:
        """One made by tritonx from a core status code (an int)."""
        known = code in ErrorCode._value2member_map_
        return cls(message, ErrorCode(code) if known else ErrorCode.UNKNOWN)

    def message(self) -> str:
        return self._message

    def code(self) -> ErrorCode:
        return self._code

    def __repr__(self) -> str:
        return f"TritonError({self._message!r}, code={self._code})"

    def to_exception(self) -> errors.TritonXError:
        """The tritonx exception carrying the same code and message."""
        cls = _CODE_TO_CLASS.get(self._code, errors.UnknownError)
        return cls(self._message)


_CODE_TO_CLASS: dict[ErrorCode, type[errors.TritonXError]] = {
    TritonError.UNKNOWN: errors.UnknownError,
    TritonError.INTERNAL: errors.InternalError,
    TritonError.NOT_FOUND: errors.NotFoundError,
    TritonError.INVALID_ARG: errors.InvalidArgumentError,
    TritonError.UNAVAILABLE: errors.UnavailableError,
    TritonError.UNSUPPORTED: errors.UnsupportedError,
    TritonError.ALREADY_EXISTS: errors.AlreadyExistsError,
    TritonError.CANCELLED: errors.CancelledError,
}
