"""Command-line tools shipped with tritonx."""
