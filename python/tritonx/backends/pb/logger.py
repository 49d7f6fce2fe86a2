"""pb_utils.Logger: model log lines go to the Python logger ``tritonx.model``."""

from __future__ import annotations

import enum
import logging

_log = logging.getLogger("tritonx.model")


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
    def log(message: str, level: _Level = _Level.INFO, *, _depth: int = 2) -> None:
        # stacklevel points file:line at the model's call, like Triton's log lines.
        _log.log(_TO_LOGGING[LogLevel(level)], "%s", message, stacklevel=_depth)

    @staticmethod
    def log_info(message: str) -> None:
        Logger.log(message, LogLevel.INFO, _depth=3)

    @staticmethod
    def log_warn(message: str) -> None:
        Logger.log(message, LogLevel.WARNING, _depth=3)

    @staticmethod
    def log_error(message: str) -> None:
        Logger.log(message, LogLevel.ERROR, _depth=3)

    @staticmethod
    def log_verbose(message: str) -> None:
        Logger.log(message, LogLevel.VERBOSE, _depth=3)
