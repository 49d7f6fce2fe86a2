from __future__ import annotations

from tritonx.tools.analyze.cli import main

raise SystemExit(main())
