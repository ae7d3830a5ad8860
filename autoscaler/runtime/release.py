"""Keeps the garbage collector off the policies' objects, and gives memory back once groups go.

After each policy load the surviving objects are frozen (`gc.freeze`): with 10,000 groups a full
collection would scan millions of long-lived objects and stall the event loop for seconds. When
many groups went away, the objects are unfrozen, collected, and glibc is asked to return free
pages (`malloc_trim`): CPython and glibc keep freed memory otherwise, so a daemon that once held
10,000 groups would keep their footprint for good. Cycles of a few removed groups wait for the
next large removal (or a restart).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from typing import Any

import structlog

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
