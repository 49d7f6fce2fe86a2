"""The one error kind the command line turns into a single line and exit code,
and the record of an interrupt that must not be lost."""

from __future__ import annotations

import os
import threading
from types import FrameType

_LOGGING_FILE = os.path.join("logging", "__init__.py")


class AnalyzeError(Exception):
    """A problem with the user's input or environment: printed as one line."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupts:
    """SIGINT/SIGTERM, remembered as well as raised.

    A ``KeyboardInterrupt`` raised while the interpreter runs an at-fork hook
    (logging's lock release after ``subprocess.Popen`` forks a perf run) or a
    finalizer is printed as "Exception ignored" and dropped, and the search
    would run to its end. The handler therefore also sets a flag that
    ``check`` turns back into ``KeyboardInterrupt`` at the next measurement
    boundary. Thread-safety: the handler runs on the main thread; ``check``
    may be called from any thread (the flag is an ``Event``).
    """

    requested = threading.Event()

    @classmethod
    def handle(cls, signum: int, frame: FrameType | None) -> None:
        cls.requested.set()
        # Interrupted inside logging's lock handling (what the at-fork hook runs):
        # a raise there is only printed, traceback and all; ``check`` raises it.
        if frame is not None and frame.f_code.co_filename.endswith(_LOGGING_FILE):
            return
        raise KeyboardInterrupt

    @classmethod
    def check(cls) -> None:
        if cls.requested.is_set():
            raise KeyboardInterrupt
