"""pb_utils.Logger: model log lines go to the Python logger ``tritonx.model``.

Arguments are checked as Triton's pybind11 binding checks them (see binding_args):
a message that is neither ``str`` nor ``bytes``, or a level that is not a
``LogLevel``, is a TypeError rather than a line in the log."""

from __future__ import annotations

import enum
import logging

from tritonx.backends.pb import binding_args

MODEL_LOGGER = "tritonx.model"
_log = logging.getLogger(MODEL_LOGGER)


class LogLevel(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


_Level = LogLevel  # the class below has a LogLevel attribute of its own

_TO_LOGGING = {
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.VERBOSE: logging.DEBUG,
}


def _checked(
    function: str, signature: str, message: object, level: object = LogLevel.INFO
) -> str:
    """The message as text, if the call is one Triton's binding takes: a ``str`` or
    ``bytes`` message and a ``LogLevel`` (not a plain int); else its TypeError."""
    try:
        if not isinstance(level, LogLevel):
            raise binding_args.Refused
        return binding_args.std_string(message)
    except binding_args.Refused:
        given = [message] if function != "log" else [message, level]
        shown = [repr(value) for value in given if value is not binding_args.REQUIRED]
        raise binding_args.incompatible(
            function, signature, shown, constructor=False
        ) from None


_LOG_SIGNATURE = (
    "(message: str, level: c_python_backend_utils.Logger.LogLevel = "
    "<LogLevel.INFO: 0>) -> None"
)
_MESSAGE_SIGNATURE = "(message: str) -> None"


def _emit(text: str, level: LogLevel, depth: int) -> None:
    # stacklevel points file:line at the model's call, like Triton's log lines.
    _log.log(_TO_LOGGING[level], "%s", text, stacklevel=depth)


class Logger:
    """Static methods, used as ``pb_utils.Logger.log_info(msg)``. The levels are
    also attributes of the class (``Logger.INFO``, ``Logger.LogLevel.INFO``), as
    Triton's binding nests and exports its enum there."""

    LogLevel = LogLevel
    INFO = LogLevel.INFO
    WARNING = LogLevel.WARNING
    ERROR = LogLevel.ERROR
    VERBOSE = LogLevel.VERBOSE

    @staticmethod
    def log(
        message: str = binding_args.REQUIRED,
        level: _Level = _Level.INFO,
        *,
        _depth: int = 2,
    ) -> None:
        _emit(_checked("log", _LOG_SIGNATURE, message, level), level, _depth + 1)

    @staticmethod
    def log_info(message: str = binding_args.REQUIRED) -> None:
        _emit(_checked("log_info", _MESSAGE_SIGNATURE, message), LogLevel.INFO, 3)

    @staticmethod
    def log_warn(message: str = binding_args.REQUIRED) -> None:
        _emit(_checked("log_warn", _MESSAGE_SIGNATURE, message), LogLevel.WARNING, 3)

    @staticmethod
    def log_error(message: str = binding_args.REQUIRED) -> None:
        _emit(_checked("log_error", _MESSAGE_SIGNATURE, message), LogLevel.ERROR, 3)

    @staticmethod
    def log_verbose(message: str = binding_args.REQUIRED) -> None:
        _emit(_checked("log_verbose", _MESSAGE_SIGNATURE, message), LogLevel.VERBOSE, 3)
