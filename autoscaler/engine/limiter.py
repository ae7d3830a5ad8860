"""A global limit on concurrent scale actions, so that many groups do not start a clone storm at once.

Start storms are CPU-bound on the host (libvirt.md §7); a slot not obtained within the timeout makes
the handler give up this tick and decide again at the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class SlotTimeout(Exception):
    """No slot became free in time."""


class Limiter:
    """At most `slots` actions at a time across every group."""

    def __init__(self, slots: int, timeout: float) -> None:
        self.slots = slots
        self.timeout = timeout
        self._semaphore = asyncio.Semaphore(slots)
        self.busy = 0
        """Slots in use right now."""

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration of the block; SlotTimeout when none frees up in time."""
        try:
            async with asyncio.timeout(self.timeout):
                await self._semaphore.acquire()
        except TimeoutError as exc:
            raise SlotTimeout(f"no action slot free within {self.timeout:g}s") from exc
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            self._semaphore.release()
