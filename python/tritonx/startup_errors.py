"""How a failed start is reported, in Triton's words.

tritonserver ends a failed start with one line: "error: creating server: <Code> -
<message>" printed on stderr whatever the log settings, or, for an endpoint that
could not start once the models were loaded, a log record "failed to start <Service>
service: <Code> - <message>". Scripts and orchestrators grep for these.
"""

from __future__ import annotations

import logging

from tritonx.errors import CODE_WORDS, TritonXError
from tritonx.logging_setup import write_console_line

logger = logging.getLogger("tritonx.server")


class EndpointStartError(Exception):
    """An endpoint that refused to start once the models were loaded; Triton's
    last line names the endpoint instead of "creating server"."""

    def __init__(self, service: str, error: TritonXError) -> None:
        super().__init__(error.message)
        self.service = service
        self.error = error


def report_startup_failure(error: BaseException) -> None:
    """Triton's last words when startup fails: "error: creating server: ..." is a
    plain line on stderr (tritonserver prints it itself, whatever the log
    settings), an endpoint that failed to start a log record."""
    text = creating_server_error(error)
    if isinstance(error, EndpointStartError):
        logger.error("%s", text)
    else:
        write_console_line(text)


def creating_server_error(error: BaseException) -> str:
    """Triton's last line when startup fails, e.g. "... Internal - failed to ..."."""
    if isinstance(error, EndpointStartError):
        word = CODE_WORDS.get(error.error.code, "Internal")
        return f"failed to start {error.service} service: {word} - {error.error}"
    if isinstance(error, TritonXError):
        word = CODE_WORDS.get(error.code, "Internal")
        return f"error: creating server: {word} - {error.message}"
    return f"error: creating server: Internal - {error}"
