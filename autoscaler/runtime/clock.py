"""The real clock the daemon runs on; tests substitute a fake that satisfies the same protocol."""

from __future__ import annotations

import asyncio
import time


class SystemClock:
    """`engine.Clock` backed by the system's wall and monotonic clocks and asyncio.sleep."""

    def now(self) -> float:
        """Wall-clock time as Unix seconds."""
        return time.time()

    def monotonic(self) -> float:
        """Monotonic seconds, for durations."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait on the event loop."""
        await asyncio.sleep(seconds)
