"""Pieces of the in-process ``triton_python_backend_utils`` (see ``pb_utils``)."""
