"""``python -m tritonx.openai``: the same as ``tritonx-openai``."""

import sys

from tritonx.openai.main import main

sys.exit(main())
