"""The server process's long-lived Python objects and the cyclic garbage collector.

A full (generation 2) collection walks every object the collector tracks. Once a
server has started (its imports, backends, model code and frontends) that is tens of
thousands of objects, and each full collection paused whichever thread triggered it
(the event loop or a model instance's thread, the GIL held) for 15-20 ms on a
2-core machine, every few thousand requests. Those objects live as long as the
process, so the standalone server freezes them once it serves (``gc.freeze``): full
collections then walk only what came later and take well under a millisecond.

Frozen objects are never collected. An unloaded model's reference cycles must be,
so the first unload thaws the heap and collections work as before from then on.
Only a heap this module froze is thawed: an application embedding tritonx keeps
its own collector settings.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen = False


def freeze_long_lived() -> None:
    """Collect what start-up left behind, then exempt the rest from collections."""
    global _frozen
    with _lock:
        gc.collect()
        gc.freeze()
        _frozen = True


def thaw() -> None:
    """Make frozen objects collectable again (before an unload's objects die)."""
    global _frozen
    with _lock:
        if _frozen:
            gc.unfreeze()
            _frozen = False
