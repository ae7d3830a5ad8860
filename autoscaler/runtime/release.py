"""Keeps the garbage collector off the policies' objects, and gives memory back once groups go.

After each policy load the surviving objects are frozen (`gc.freeze`): with 10,000 groups a full
collection would scan millions of long-lived objects and stall the event loop for seconds. When
many groups went away, the objects are unfrozen, collected, and glibc is asked to return free
pages (`malloc_trim`): CPython and glibc keep freed memory otherwise, so a daemon that once held
10,000 groups would keep their footprint for good. Cycles of a few removed groups wait for the
next large removal (or a restart).

The first evaluations of many new groups create as many long-lived objects again (metric series,
journal entries, history): every automatic full collection meanwhile scanned them all anew, with
10,000 groups holding the loop for up to a second each time while finding nothing. For a while
after a load (the first evaluations' window and a margin), the objects that outlive two
collections are frozen as well (as the load's are), so none is scanned by a full collection;
afterwards collection is as usual. Hand-overs of a load run with the collector held off
(reference counting still frees memory), and what they built is frozen.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import time
from typing import Any

import structlog

from autoscaler.engine import policies

log = structlog.get_logger(__name__)


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def settle(removed: int, release_after: int) -> None:
    """After a load: give memory back when at least `release_after` groups went, then freeze."""
    if removed >= release_after:
        give_back()
    gc.freeze()


def give_back() -> None:
    """Collect all garbage (frozen objects too), then return the free heap to the system (glibc)."""
    gc.unfreeze()
    collected = gc.collect()
    trimmed = bool(_LIBC.malloc_trim(0)) if _LIBC is not None else False
    log.info("memory_released", objects_collected=collected, heap_trimmed=trimmed)


class _Freezer:
    """A gc callback: after a collection of the middle or oldest generation (whose survivors the
    next full collections would scan), freeze them, until `until` (monotonic seconds)."""

    def __init__(self) -> None:
        self.until = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase != "stop" or info["generation"] == 0:
            return
        if time.monotonic() < self.until:
            gc.freeze()
        else:
            stop_freezing()


_FREEZER = _Freezer()


def freeze_survivors(seconds: float) -> None:
    """Freeze what outlives two collections for the next `seconds` (or longer, when already asked)."""
    _FREEZER.until = max(_FREEZER.until, time.monotonic() + seconds)
    if _FREEZER not in gc.callbacks:
        gc.callbacks.append(_FREEZER)


def stop_freezing() -> None:
    """Collect as usual again (frozen objects stay frozen until `give_back`)."""
    _FREEZER.until = 0.0
    with contextlib.suppress(ValueError):
        gc.callbacks.remove(_FREEZER)


collector_paused = policies.collector_paused
"""The engine's own pause of the collector, for the hand-over after a load (`runtime.daemon`)."""
