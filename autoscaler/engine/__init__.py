"""The engine runs the decision core against the world: one handler per group, a manager, a limiter.

It depends on time only through the `Clock` protocol below, so tests drive cooldowns, backoff and
schedules with a fake clock in zero wall time; `runtime.clock.SystemClock` is the real one.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Where the engine gets its time from."""

    def now(self) -> float:
        """Wall-clock time as Unix seconds (what decisions and cooldowns are stamped with)."""
        ...

    def monotonic(self) -> float:
        """A clock that never jumps, for measuring durations."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (a fake clock advances instead of waiting)."""
        ...
