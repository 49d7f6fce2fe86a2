"""One exception tree for every error tritonx reports, with Triton's codes.

The C++ core returns a status code; the extension raises the matching class below. The
frontends turn an exception into an HTTP status (``http_status``) or a gRPC status code
(``grpc_code``); both come from the core's one table (``csrc/core/status.cc``), which the
C++ frontends use too, so each code is mapped in exactly one place.
"""

from __future__ import annotations

from typing import ClassVar

from tritonx import _native

# Triton name -> (word it prefixes messages with, HTTP status, gRPC code name).
_CODES: dict[str, tuple[str, int, str]] = {
    name: (words, http, grpc) for name, words, http, grpc in _native.status_codes()
}


class TritonXError(Exception):
    """Base class; ``code`` is Triton's spelling of the error code."""

    code: ClassVar[str] = "UNKNOWN"
    # Set for every class from the core's table (below).
    http_status: ClassVar[int]
    grpc_code: ClassVar[str]  # name of a grpc.StatusCode member

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UnknownError(TritonXError):
    code = "UNKNOWN"


class InternalError(TritonXError):
    code = "INTERNAL"


class NotFoundError(TritonXError):
    code = "NOT_FOUND"


class InvalidArgumentError(TritonXError):
    code = "INVALID_ARG"


class UnavailableError(TritonXError):
    code = "UNAVAILABLE"


class UnsupportedError(TritonXError):
    code = "UNSUPPORTED"


class AlreadyExistsError(TritonXError):
    code = "ALREADY_EXISTS"


class CancelledError(TritonXError):
    code = "CANCELLED"


ERRORS_BY_CODE: dict[str, type[TritonXError]] = {
    cls.code: cls
    for cls in (
        UnknownError,
        InternalError,
        NotFoundError,
        InvalidArgumentError,
        UnavailableError,
        UnsupportedError,
        AlreadyExistsError,
        CancelledError,
    )
}


_CLASSES: list[type[TritonXError]] = [TritonXError, *ERRORS_BY_CODE.values()]
for _cls in _CLASSES:
    _, _cls.http_status, _cls.grpc_code = _CODES[_cls.code]

# How Triton spells each code when it prefixes a message ("Invalid argument: ...",
# "error: creating server: Internal - ...").
CODE_WORDS: dict[str, str] = {name: words for name, (words, _, _) in _CODES.items()}


def error_from_code(code: str, message: str) -> TritonXError:
    """Build the exception for a Triton error code name ("INVALID_ARG", ...)."""
    return ERRORS_BY_CODE.get(code, UnknownError)(message)


def as_triton_error(exc: BaseException) -> TritonXError:
    """Any exception as a TritonXError; foreign exceptions become INTERNAL."""
    if isinstance(exc, TritonXError):
        return exc
    return InternalError(str(exc) or type(exc).__name__)
