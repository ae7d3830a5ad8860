"""The replay loop: simulated time steps over a trace, a controller decides, the fleet follows.

Every controller (our decision core or a peer baseline) is driven by this same loop and billed by
the same fleet, so their figures differ only by their decisions.  The loop steps on a grid fine
enough for the controller's interval and the trace's step; the load it shows a controller is the
newest row at or before `now`, with that row's own timestamp, so a gap reads as an older (and
eventually stale) sample, never as zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from autoscaler.simulate import fleet as fleet_mod
from autoscaler.simulate import trace as trace_mod

Progress = Callable[[int, int], None]
"""Called with (done, total) grid steps now and then."""


@dataclass(frozen=True, slots=True)
class Reading:
    """The newest trace row at or before the current simulated time."""

    value: float
    at: float


class Controller(Protocol):
    """Anything that sizes a simulated group: our policy through the decision core, or a baseline."""

    name: str
    """Shown in tables and plots."""
    interval: int
    """Seconds between two decisions."""

    def tick(self, now: float, reading: Reading | None, fleet: fleet_mod.Fleet) -> None:
        """Look at the load and the fleet at `now`, and scale the fleet."""


@dataclass
class Run:
    """What one replay produced, row by row of the trace."""

    name: str
    supply: trace_mod.IntArray
    """Ready instances at each row (after that step's decision)."""
    alive: trace_mod.FloatArray
    """Instance-equivalents being paid for at each row."""
    changes: int = 0
    """Instances added plus removed."""
    extra: dict[str, object] = field(default_factory=dict)
    """Controller-specific figures, e.g. the forecast error."""


def grid(step: int, interval: int) -> tuple[int, int]:
    """(grid seconds, grid steps per decision): the trace step or the interval, whichever is coarser."""
    if interval >= step:
        return step, max(1, round(interval / step))
    fine = math.gcd(step, interval)
    return fine, interval // fine


def replay(
    trace: trace_mod.Trace, controller: Controller, fleet: fleet_mod.Fleet, progress: Progress | None = None
) -> Run:
    """Replay `trace` through `controller`, recording supply and cost at every row."""
    times, values = trace.times, trace.values
    rows = len(times)
    supply = np.zeros(rows, dtype=np.int64)
    alive = np.zeros(rows, dtype=np.float64)
    fine, every = grid(trace.step, controller.interval)
    first, last = int(times[0]), int(times[-1])
    total = (last - first) // fine + 1
    report_every = max(1, total // 200)
    seen = recorded = 0
    reading: Reading | None = None
    for i in range(total):
        now = float(first + i * fine)
        while seen < rows and times[seen] <= now:
            seen += 1
            reading = Reading(float(values[seen - 1]), float(times[seen - 1]))
        fleet.advance(now)
        if i % every == 0:
            controller.tick(now, reading, fleet)
            fleet.advance(now)
        if recorded < seen:
            supply[recorded:seen] = fleet.ready
            alive[recorded:seen] = fleet.alive()
            recorded = seen
        if progress is not None and i % report_every == 0:
            progress(i, total)
    if progress is not None:
        progress(total, total)
    return Run(controller.name, supply, alive, fleet.changes)
