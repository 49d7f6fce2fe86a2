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
import queue
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

# Bytes of entries waiting for a slow log sink; past this, new ones are dropped.
LOG_QUEUE_BYTES = 1 << 20
# How long a flush or a close waits for the queued entries to be written.
LOG_FLUSH_WAIT_S = 1.0

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


class _QueuedLogHandler(logging.Handler):
    """Formats each entry on the thread that logs it and writes it from a thread of
    its own, so that no request waits for the log's sink.

    A sink that blocks (a pipe nobody reads, Docker's blocking log driver behind a
    slow remote) used to stall every request that logged, a failed execute for one:
    ~150 of them filled a 64 KiB pipe and the server stopped answering, and did not
    exit on SIGTERM either (Triton 2.51 behaves the same). Here entries wait in a
    queue of at most LOG_QUEUE_BYTES and, when it is full, are dropped. A sink that
    fails (a full disk, a pipe whose reader left) drops its entries too, where
    logging's default printed a traceback per entry to stderr (Triton drops them
    silently); the first failure is reported once on the process's stderr when the
    log goes elsewhere. The first entry written after any loss is preceded by a
    count of the lost ones. Thread safety: emit from any thread; one writer thread
    owns the stream; the lock guards the counts.
    """

    def __init__(self, stream: TextIO, sink: str) -> None:
        super().__init__()
        self.stream = stream
        self.sink = sink
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._lost_lock = threading.Lock()  # guards the two counts below
        self._lost = 0  # entries not written, since the last note about them
        self._queued_bytes = 0  # characters queued and not yet written
        self._failing = False  # the last write failed (writer thread only)
        self._writer = threading.Thread(
            target=self._write_entries, name="tritonx-log", daemon=True
        )
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # a broken record, not a broken sink
            self.handleError(record)
            return
        with self._lost_lock:
            if self._queued_bytes + len(line) > LOG_QUEUE_BYTES:
                self._lost += 1
                return
            self._queued_bytes += len(line)
        self._queue.put(line)

    def _write_entries(self) -> None:
        stop = False
        while not stop:
            # Everything queued by now leaves in one write: under a burst (every
            # request logging at --log-verbose) one system call and one wake-up carry
            # many entries.
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get())
            if None in batch:
                stop = True
                batch = batch[: batch.index(None)]
            text = "".join(batch)  # type: ignore[arg-type]
            if text:
                self._write(text, len(batch))
            with self._lost_lock:
                self._queued_bytes -= len(text)

    def _write(self, text: str, entries: int) -> None:
        with self._lost_lock:
            lost, self._lost = self._lost, 0
        try:
            if lost:
                self.stream.write(self._lost_note(lost))
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError) as error:  # ValueError: the stream closed
            self._report_failure(error)
            with self._lost_lock:
                self._lost += lost + entries
            return
        self._failing = False

    def _lost_note(self, lost: int) -> str:
        note = logging.makeLogRecord(
            {
                "name": LOGGER_NAME,
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "msg": f"{lost} log entries were dropped: {self.sink} could not "
                "take them (failing, or not reading fast enough)",
                "filename": "logging_setup.py",
                "lineno": 0,
                "thread_native_id": threading.get_native_id(),
            }
        )
        try:
            return self.format(note) + "\n"
        except Exception:  # a formatter made for other records (uvicorn's access)
            return f"{note.levelname}: {note.getMessage()}\n"

    def _report_failure(self, error: Exception) -> None:
        if self._failing:
            return
        self._failing = True
        stderr = sys.__stderr__
        if stderr is not None and self.stream is not stderr:
            with contextlib.suppress(OSError, ValueError):
                stderr.write(
                    f"tritonx: cannot write the log to {self.sink}: {error}; "
                    "entries are dropped until it can be written again\n"
                )

    def flush(self) -> None:
        """Waits (a moment at most) for the entries queued so far to be written."""
        deadline = time.monotonic() + LOG_FLUSH_WAIT_S
        while self._queued_bytes and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        """Writes what is queued (waiting a moment at most). The handler stays
        usable: logging.config's dictConfig (uvicorn's, for one) closes every
        handler it finds, ours included, and ours stays on the tritonx logger."""
        self.flush()
        super().close()

    def retire(self) -> None:
        """configure() replaces this handler: stop the writer once the queue is
        written and close the stream, waiting a moment at most (a sink that blocks
        must not hold a reconfiguration; a writer still blocked keeps its stream)."""
        self._queue.put(None)
        self._writer.join(LOG_FLUSH_WAIT_S)
        if not self._writer.is_alive() and self.stream not in (sys.stderr, sys.stdout):
            with contextlib.suppress(OSError, ValueError):
                self.stream.close()
        self.close()


def write_console_line(text: str) -> None:
    """A plain line on stderr (not a log record: Triton prints some such lines
    itself), after the log entries queued before it and in one write, so that
    neither reorders nor splits the other."""
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        handler.flush()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _open_log_file(path: Path) -> TextIO:
    # Unbuffered below the text layer: each entry leaves in one write(), so the file
    # stays readable while the server runs and a failed write loses only its own
    # entry (a buffer would keep it and retry it before every later one).
    raw = open(path, "ab", buffering=0)  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", write_through=True)


def _open_console(name: str = "stderr") -> TextIO:
    """``sys.stderr`` or ``sys.stdout`` (``name``) as a stream of its own over the
    same pipe or terminal: a writer blocked on a full pipe then holds no lock of
    the sys stream, whose flush at the interpreter's exit would otherwise wait on
    it forever."""
    console: TextIO = getattr(sys, name)
    try:
        raw = open(os.dup(console.fileno()), "wb", buffering=0)  # noqa: SIM115
    except (AttributeError, OSError, ValueError):  # no real descriptor (embedded)
        return console
    return io.TextIOWrapper(raw, encoding="utf-8", write_through=True)


def console_handler(stream: str = "stderr") -> logging.Handler:
    """A handler for loggers other than tritonx's (uvicorn's, through its
    ``log_config``) that writes to this process's ``stream`` ("stderr" or
    "stdout") from a thread of its own, with the same bounded queue: a console
    nobody reads must not stall the event loop that logs each request."""
    if stream not in ("stderr", "stdout"):
        raise ValueError(f"console_handler: unknown stream {stream!r}")
    return _QueuedLogHandler(_open_console(stream), stream)


def configure(options: LogOptions) -> logging.Logger:
    """Install one handler on the ``tritonx`` logger; returns that logger."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        if isinstance(handler, _QueuedLogHandler):
            handler.retire()
        else:
            handler.close()
    if options.file is not None:
        handler = _QueuedLogHandler(_open_log_file(options.file), str(options.file))
    else:
        handler = _QueuedLogHandler(_open_console(), "stderr")
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
