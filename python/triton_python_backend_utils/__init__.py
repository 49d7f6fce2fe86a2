"""``import triton_python_backend_utils as pb_utils`` for Triton model.py files.

Everything lives in ``tritonx.backends.pb_utils``; this package only re-exports it.
"""

from __future__ import annotations

from tritonx.backends.pb_utils import *  # noqa: F403
from tritonx.backends.pb_utils import __all__ as __all__
