from __future__ import annotations

from tritonx.cli import main

raise SystemExit(main())
