"""Command-line tools shipped with tritonx (tritonx-perf, tritonx-analyze)."""
