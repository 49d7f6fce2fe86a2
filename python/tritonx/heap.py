"""The server process's long-lived Python objects and the cyclic garbage collector.

A full (generation 2) collection walks every object the collector tracks. Once a
server has started (its imports, backends, model code and frontends) that is tens of
thousands of objects, and each full collection paused whichever thread triggered it
(the event loop or a model instance's thread, the GIL held) for 15-20 ms on a
2-core machine, every few thousand requests. Those objects live as long as the
process, so the standalone server freezes them once it serves (``gc.freeze``): full
collections then walk only what came later and take well under a millisecond.

Frozen objects are never collected, and an unloaded model's reference cycles must
be: an unload (or an instance an update retires) thaws the heap, naming what it
retires. Once every object so named is gone (after a full collection, which frees
their cycles) the heap is frozen again; an object that stays referenced keeps it
thawed, so nothing it holds is frozen for good. Only a heap this module froze is
thawed: an application embedding tritonx keeps its own collector settings.

Thread-safety: every function may be called from any thread (one lock); the
checks run on short-lived timer threads.
"""

from __future__ import annotations

import gc
import threading
import weakref

_lock = threading.Lock()
_enabled = False  # freeze_long_lived ran: this process's heap is ours to freeze
_frozen = False
# Retired objects that must be collected before the heap is frozen again (weak
# references: a dataclass with eq is not hashable, so no WeakSet).
_retired: list[weakref.ref[object]] = []
# An object that cannot be watched was retired: the heap stays thawed.
_untracked = False

# Seconds between checks for the retired objects' end (doubling), and the last one.
_FIRST_CHECK_S = 1.0
_LAST_CHECK_S = 64.0


def freeze_long_lived() -> None:
    """Collect what start-up left behind, then exempt the rest from collections."""
    global _enabled, _frozen
    with _lock:
        gc.collect()
        gc.freeze()
        _enabled = _frozen = True


def thaw(retired: object) -> None:
    """Make frozen objects collectable again: ``retired`` (a model or an instance
    leaving the server) and what it holds must be collected."""
    global _frozen, _untracked
    with _lock:
        if not _enabled:
            return
        try:
            _retired.append(weakref.ref(retired))
        except TypeError:  # not weakly referenceable
            _untracked = True
        if _frozen:
            gc.unfreeze()
            _frozen = False


def refreeze_when_collected() -> None:
    """Once the retired objects are gone, freeze the heap again: checked on a
    timer thread after a second, then at doubling intervals up to about two
    minutes (each check a full collection)."""
    if _enabled:
        _check_later(_FIRST_CHECK_S)


def _check_later(delay: float) -> None:
    timer = threading.Timer(delay, _check, (delay,))
    timer.name = "tritonx-heap-refreeze"
    timer.daemon = True
    timer.start()


def _check(delay: float) -> None:
    if not _try_refreeze() and delay < _LAST_CHECK_S:
        _check_later(delay * 2)


def _try_refreeze() -> bool:
    """Freeze again if every retired object is gone; True when frozen."""
    global _frozen
    with _lock:
        if _frozen or _untracked:
            return _frozen
        # Frees the retired objects held only by cycles, and what they held.
        gc.collect()
        _retired[:] = [ref for ref in _retired if ref() is not None]
        if _retired:
            return False
        gc.freeze()
        _frozen = True
        return True
