"""The live display while a window runs: a rich progress bar when stdout is a
terminal, nothing otherwise (logs and pipes get only the per-step report)."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = sys.stdout.isatty()
        self._progress: Any = None
        self._task: Any = None
        self._label = ""
        self._trials = 0
        if enabled:
            try:
                from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
                from rich.progress import Progress as RichProgress
            except ImportError:  # rich is a dependency; a stripped install still runs
                return
            self._progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[requests]} requests"),
                TimeElapsedColumn(),
                transient=True,
            )

    @property
    def enabled(self) -> bool:
        return self._progress is not None

    def start_step(self, label: str, max_trials: int) -> None:
        self._label = label
        self._trials = max_trials
        if self._progress is None:
            return
        self._progress.start()
        self._task = self._progress.add_task(label, total=1.0, requests=0)

    def update(self, window: int, fraction: float, requests: int) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.update(
            self._task,
            completed=fraction,
            requests=requests,
            description=f"{self._label} - window {window + 1}/{self._trials}",
        )

    def end_step(self) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.remove_task(self._task)
        self._task = None
        self._progress.stop()
