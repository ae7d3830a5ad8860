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

from autoscaler.simulate import attribution
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
    ledger: attribution.Ledger | None = None
    """Which stage held which capacity, decision by decision (our policy only)."""


def grid(step: int, interval: int) -> tuple[int, int]:
    """(grid seconds, grid steps per decision): fine enough to hold both the trace step and the interval.

    A decision falls exactly every `interval` seconds, never rounded to a multiple of the step.
    """
    fine = math.gcd(step, interval)
    return fine, interval // fine


class _Cells:
    """Per-row supply and cost gathered over every grid tick inside the row's step."""

    def __init__(self, times: trace_mod.IntArray, step: int) -> None:
        self.times, self.step = times, step
        self.supply = np.zeros(len(times), dtype=np.int64)
        self.alive_sum = np.zeros(len(times), dtype=np.float64)
        self.ticks = np.zeros(len(times), dtype=np.int64)
        self.row = -1

    def record(self, now: float, ready: int, alive: float) -> None:
        """One tick: the row whose step holds `now` keeps its lowest supply and adds to its mean cost."""
        while self.row + 1 < len(self.times) and self.times[self.row + 1] <= now:
            self.row += 1
        row = self.row
        if row < 0 or now >= self.times[row] + self.step:
            return
        self.supply[row] = ready if self.ticks[row] == 0 else min(int(self.supply[row]), ready)
        self.alive_sum[row] += alive
        self.ticks[row] += 1

    def finish(self, ready: int, alive: float) -> tuple[trace_mod.IntArray, trace_mod.FloatArray]:
        """(supply, alive) per row; a row no tick fell into takes the fleet as the last tick left it."""
        empty = self.ticks == 0
        self.supply[empty], self.alive_sum[empty], self.ticks[empty] = ready, alive, 1
        return self.supply, self.alive_sum / self.ticks


def replay(
    trace: trace_mod.Trace,
    controller: Controller,
    fleet: fleet_mod.Fleet,
    progress: Progress | None = None,
    *,
    delay: float | None = None,
) -> Run:
    """Replay `trace` through `controller`, recording supply and cost for every row.

    A row is the load over the step it starts and becomes known `delay` seconds after its
    timestamp (default: one step, when that step is over, as a rate over it would be), stamped
    with that time.  A row's supply is the fewest instances ready at any tick inside its step,
    and its cost the mean instance-equivalents paid over those ticks: capacity that arrives late
    in a step does not count for it, and capacity held only briefly is billed only briefly.
    """
    times, values = trace.times, trace.values
    known_after = float(trace.step if delay is None else delay)
    rows = len(times)
    cells = _Cells(times, trace.step)
    fine, every = grid(trace.step, controller.interval)
    first, last = int(times[0]), int(times[-1]) + trace.step - fine
    total = (last - first) // fine + 1
    report_every = max(1, total // 200)
    seen = 0
    reading: Reading | None = None
    for i in range(total):
        now = float(first + i * fine)
        while seen < rows and times[seen] + known_after <= now:
            seen += 1
            reading = Reading(float(values[seen - 1]), float(times[seen - 1]) + known_after)
        fleet.advance(now)
        if i % every == 0:
            controller.tick(now, reading, fleet)
            fleet.advance(now)
        cells.record(now, fleet.ready, fleet.alive())
        if progress is not None and i % report_every == 0:
            progress(i, total)
    if progress is not None:
        progress(total, total)
    supply, alive = cells.finish(fleet.ready, fleet.alive())
    return Run(controller.name, supply, alive, fleet.changes)
