"""One exception tree for every error tritonx reports, with Triton's codes.

The C++ core returns a status code; the extension raises the matching class below. The
frontends turn an exception into an HTTP status (``http_status``) or a gRPC status code
(``grpc_code``) from the same table, so each error is mapped in exactly one place.
"""

from __future__ import annotations

from typing import ClassVar


class TritonXError(Exception):
    """Base class; ``code`` is Triton's spelling of the error code."""

    code: ClassVar[str] = "UNKNOWN"
    http_status: ClassVar[int] = 400
    grpc_code: ClassVar[str] = "UNKNOWN"  # name of a grpc.StatusCode member

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UnknownError(TritonXError):
    code = "UNKNOWN"
    http_status = 400
    grpc_code = "UNKNOWN"


class InternalError(TritonXError):
    code = "INTERNAL"
    http_status = 500
    grpc_code = "INTERNAL"


class NotFoundError(TritonXError):
    code = "NOT_FOUND"
    http_status = 404
    grpc_code = "NOT_FOUND"


class InvalidArgumentError(TritonXError):
    code = "INVALID_ARG"
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class UnavailableError(TritonXError):
    code = "UNAVAILABLE"
    http_status = 503
    grpc_code = "UNAVAILABLE"


class UnsupportedError(TritonXError):
    code = "UNSUPPORTED"
    http_status = 501
    grpc_code = "UNIMPLEMENTED"


class AlreadyExistsError(TritonXError):
    code = "ALREADY_EXISTS"
    http_status = 400
    grpc_code = "ALREADY_EXISTS"


class CancelledError(TritonXError):
    code = "CANCELLED"
    http_status = 400
    grpc_code = "CANCELLED"


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


# How Triton spells each code when it prefixes a message ("Invalid argument: ...",
# "error: creating server: Internal - ...").
CODE_WORDS: dict[str, str] = {
    "UNKNOWN": "Unknown",
    "INTERNAL": "Internal",
    "NOT_FOUND": "Not found",
    "INVALID_ARG": "Invalid argument",
    "UNAVAILABLE": "Unavailable",
    "UNSUPPORTED": "Unsupported",
    "ALREADY_EXISTS": "Already exists",
    "CANCELLED": "Cancelled",
}


def error_from_code(code: str, message: str) -> TritonXError:
    """Build the exception for a Triton error code name ("INVALID_ARG", ...)."""
    return ERRORS_BY_CODE.get(code, UnknownError)(message)


def as_triton_error(exc: BaseException) -> TritonXError:
    """Any exception as a TritonXError; foreign exceptions become INTERNAL."""
    if isinstance(exc, TritonXError):
        return exc
    return InternalError(str(exc) or type(exc).__name__)
