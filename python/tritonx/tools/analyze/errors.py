"""The one error kind the command line turns into a single line and exit code."""

from __future__ import annotations


class AnalyzeError(Exception):
    """A problem with the user's input or environment: printed as one line."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
