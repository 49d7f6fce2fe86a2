"""The one error tritonx-perf reports as a single line (never a traceback)."""


class PerfError(Exception):
    """A user-facing failure: bad flags or data, unreachable server, unknown model."""
