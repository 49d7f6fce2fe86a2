import sys

from tritonx.tools.perf.cli import main

sys.exit(main())
