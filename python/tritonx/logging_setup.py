"""Logging configuration that mirrors Triton's log flags and line format.

Triton writes ``I1121 10:07:24.953745 11174 server.cc:305] "message"`` (severity letter,
MMDD, time with microseconds, thread id, source file:line, quoted message) or, with
``--log-format=ISO8601``, ``2024-11-21T10:07:24Z I 11174 server.cc:305] "message"``.
Tools and tests grep these lines (e.g. "Started HTTPService at ..."), so tritonx keeps
the shape. ``--log-verbose N`` enables DEBUG; ``--log-info/--log-warning/--log-error``
switch single severities off.

The message is a JSON string, as Triton writes it: a newline, quote or control
character a client put into a model name, input name or request id cannot start a
forged entry. ``TRITON_SERVER_ESCAPE_LOG_MESSAGES=0`` in the environment writes it
raw and unquoted (Triton's switch; any other value escapes). A table (Triton's
multi-line entry) is passed as ``extra={LOG_OBJECT: text}``: its heading, if any,
is escaped, and the table follows on the lines below as it is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

LOGGER_NAME = "tritonx"

# The record attribute holding a multi-line entry's object (a table).
LOG_OBJECT = "log_object"

# Triton's environment switch: "0" writes messages unescaped.
ESCAPE_VARIABLE = "TRITON_SERVER_ESCAPE_LOG_MESSAGES"

# JSON string escapes as Triton writes them: the short forms where JSON has one,
# other control characters as \uXXXX with upper-case hex (json.dumps writes
# lower case), everything else, other scripts included, as it is.
_JSON_ESCAPES: dict[int, str] = {code: f"\\u{code:04X}" for code in range(0x20)}
_JSON_ESCAPES.update(
    {
        ord('"'): r"\"",
        ord("\\"): r"\\",
        ord("\b"): r"\b",
        ord("\f"): r"\f",
        ord("\n"): r"\n",
        ord("\r"): r"\r",
        ord("\t"): r"\t",
    }
)

# Called with the tritonx logger's new level after each configure (stub processes
# follow it: stub/metrics_sync.py).
_level_listeners: list[Callable[[int], None]] = []


def add_level_listener(listener: Callable[[int], None]) -> None:
    _level_listeners.append(listener)


_LETTERS = {
    logging.DEBUG: "I",  # Triton prints verbose lines with the info letter
    logging.INFO: "I",
    logging.WARNING: "W",
    logging.ERROR: "E",
    logging.CRITICAL: "E",
}


@dataclass
class LogOptions:
    verbose: int = 0
    info: bool = True
    warning: bool = True
    error: bool = True
    format: str = "default"  # "default" | "ISO8601"
    file: Path | None = None


class TritonFormatter(logging.Formatter):
    """Formats records the way Triton's logger does."""

    def __init__(self, iso8601: bool = False, escape: bool = True) -> None:
        super().__init__()
        self.iso8601 = iso8601
        self.escape = escape

    def _text(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        table = getattr(record, LOG_OBJECT, None)
        if table is not None and not message:
            return f"\n{table}"
        text = f'"{message.translate(_JSON_ESCAPES)}"' if self.escape else message
        return text if table is None else f"{text}\n{table}"

    def format(self, record: logging.LogRecord) -> str:
        letter = _LETTERS.get(record.levelno, "I")
        text = self._text(record)
        # Triton logs the kernel thread id; threading.get_native_id matches that.
        tid = record.thread_native_id if hasattr(record, "thread_native_id") else 0
        where = f"{record.filename}:{record.lineno}"
        if self.iso8601:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
            return f"{stamp} {letter} {tid} {where}] {text}"
        local = time.localtime(record.created)
        micros = int((record.created % 1) * 1_000_000)
        stamp = time.strftime("%m%d %H:%M:%S", local)
        return f"{letter}{stamp}.{micros:06d} {tid} {where}] {text}"


class _SeverityFilter(logging.Filter):
    """Drops the severities switched off by --log-info/--log-warning/--log-error."""

    def __init__(self, options: LogOptions) -> None:
        super().__init__()
        self.options = options

    def filter(self, record: logging.LogRecord) -> bool:
        record.thread_native_id = threading.get_native_id()
        if record.levelno >= logging.ERROR:
            return self.options.error
        if record.levelno >= logging.WARNING:
            return self.options.warning
        if record.levelno >= logging.INFO:
            return self.options.info
        return self.options.verbose > 0


class _DroppingStreamHandler(logging.StreamHandler[TextIO]):
    """Writes each entry with one write() and survives a sink it cannot write.

    On a full disk (or a closed pipe) logging's default prints a traceback per entry
    to stderr, which at --log-verbose is several per request; Triton drops such
    lines silently. Here the first failure is reported once on the process's
    stderr (when the log goes elsewhere), entries are dropped while writes fail,
    and the first entry written afterwards is preceded by a count of the lost ones.
    """

    def __init__(self, stream: TextIO, sink: str) -> None:
        super().__init__(stream)
        self.sink = sink
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # a broken record, not a broken sink
            self.handleError(record)
            return
        try:
            if self.dropped:
                self.stream.write(self._dropped_line(record))
            self.stream.write(line)
            self.flush()
        except (OSError, ValueError) as error:  # ValueError: the stream was closed
            self._drop(error)
            return
        self.dropped = 0

    def _dropped_line(self, record: logging.LogRecord) -> str:
        note = logging.makeLogRecord(
            {
                "name": record.name,
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "msg": f"{self.dropped} log entries were dropped: {self.sink} "
                "could not be written",
                "created": record.created,
                "filename": "logging_setup.py",
                "lineno": 0,
                "thread_native_id": getattr(record, "thread_native_id", 0),
            }
        )
        return self.format(note) + self.terminator

    def _drop(self, error: Exception) -> None:
        self.dropped += 1
        stderr = sys.__stderr__
        if self.dropped == 1 and stderr is not None and self.stream is not stderr:
            with contextlib.suppress(OSError, ValueError):
                stderr.write(
                    f"tritonx: cannot write the log to {self.sink}: {error}; "
                    "entries are dropped until it can be written again\n"
                )


def _open_log_file(path: Path) -> TextIO:
    # Unbuffered below the text layer: each entry leaves in one write(), so the file
    # stays readable while the server runs and a failed write loses only its own
    # entry (a buffer would keep it and retry it before every later one).
    raw = open(path, "ab", buffering=0)  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", write_through=True)


def configure(options: LogOptions) -> logging.Logger:
    """Install one handler on the ``tritonx`` logger; returns that logger."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if options.file is not None:
        handler = _DroppingStreamHandler(
            _open_log_file(options.file), str(options.file)
        )
    else:
        handler = _DroppingStreamHandler(sys.stderr, "stderr")
    escape = os.environ.get(ESCAPE_VARIABLE) != "0"
    handler.setFormatter(
        TritonFormatter(iso8601=options.format == "ISO8601", escape=escape)
    )
    handler.addFilter(_SeverityFilter(options))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if options.verbose > 0 else logging.INFO)
    # Our handler is the only sink; the root logger would print a second copy.
    logger.propagate = False
    for listener in list(_level_listeners):
        listener(logger.level)
    return logger
