"""Where the over-provisioned instance-hours go: each one charged to the stage that held that capacity.

A decision's trail is a chain of counts: the checks' combined proposal, then every stage that
raised or lowered it.  Read as a stack of bands (the forecast raised 10 to 15, stabilization
held 15 up to 18), each stage owns the instances between the count it received and the one it
passed on; a later stage that lowers the count cuts the bands above it.  For every trace row the
instance-equivalents paid above demand ([demand, paid]) are split by how much of each band they
cover, under the decision in effect; what lies below every band is the reactive proposal itself
(tolerance band, rounding, the load known one step late) and is charged to `reactive`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from autoscaler import model
from autoscaler.simulate import metrics
from autoscaler.simulate import trace as trace_mod

STAGES = {
    "forecast": "forecast_floor",
    "stabilization": "scale_down_stabilization",
    "rate_limit": "rate_limit",
    "churn_budget": "churn_budget",
    "cooldown": "cooldown",
    "warmup": "warmup",
    "min_lifetime": "min_lifetime",
    "schedule": "schedule_floor",
    "bounds": "min_bound",
    "combine": "on_missing",
}
"""Trail stage -> the name it is reported under."""
REACTIVE = "reactive"
"""Capacity the checks themselves asked for above demand."""
ORDER = (*dict.fromkeys(STAGES.values()), REACTIVE)
"""Report order."""

Band = tuple[str, int, int]
"""(reported stage, lowest instance it holds, the instance above its highest)."""


def _missing_band(decision: model.Decision) -> Band | None:
    """Capacity on_missing holds or adds when the combine stage left no trace of it."""
    if any(s.name == "combine" for s in decision.trail):
        return None
    fresh = [r.proposal for r in decision.checks if r.kind == "fresh"]
    unusable = [r.proposal for r in decision.checks if r.kind != "fresh"]
    if not unusable:
        return None
    top = max(unusable)
    low = max(fresh) if fresh else 0
    return ("on_missing", low, top) if top > low else None


def bands(decision: model.Decision) -> tuple[Band, ...]:
    """The stack of bands that stages above the checks' proposal hold in `decision`."""
    stack: list[Band] = []
    missing = _missing_band(decision)
    if missing is not None:
        stack.append(missing)
    for stage in decision.trail:
        reported = STAGES.get(stage.name)
        if reported is None or stage.after == stage.before:
            continue
        if stage.after > stage.before:
            stack.append((reported, stage.before, stage.after))
            continue
        stack = [(s, lo, min(hi, stage.after)) for s, lo, hi in stack if lo < stage.after]
    return tuple(stack)


@dataclass
class Ledger:
    """The bands of every decision that changed them, in time order (a replay's record)."""

    times: list[float] = field(default_factory=list)
    held: list[tuple[Band, ...]] = field(default_factory=list)

    def record(self, decision: model.Decision) -> None:
        """Keep `decision`'s bands when they differ from the previous decision's."""
        now = bands(decision)
        if not self.held or self.held[-1] != now:
            self.times.append(decision.at)
            self.held.append(now)

    def at(self, t: float) -> tuple[Band, ...]:
        """The bands of the newest decision before `t`."""
        index = bisect.bisect_left(self.times, t) - 1
        return self.held[index] if index >= 0 else ()


def _split(low: float, high: float, held: Sequence[Band]) -> dict[str, float]:
    """How the paid instances in [low, high] above demand divide among the bands; the rest is reactive."""
    shares: dict[str, float] = {}
    for stage, lo, hi in held:
        overlap = min(float(hi), high) - max(float(lo), low)
        if overlap > 0:
            shares[stage] = shares.get(stage, 0.0) + overlap
    shares[REACTIVE] = max(0.0, (high - low) - sum(shares.values()))
    return shares


def over_provisioned(
    trace: trace_mod.Trace,
    alive: trace_mod.FloatArray,
    ledger: Ledger,
    capacity: float,
    target: float,
    mask: npt.NDArray[np.bool_] | None = None,
) -> dict[str, float]:
    """Instance-hours paid above demand in the rows of `mask`, per stage that held them (ORDER)."""
    d = metrics.demand(trace.values, capacity, target)
    rows = np.ones(len(trace.times), dtype=np.bool_) if mask is None else mask
    excess = np.flatnonzero(rows & (alive > d))
    totals = dict.fromkeys(ORDER, 0.0)
    ends = trace.times + trace.step
    for row in excess:
        held = ledger.at(float(ends[row]))
        for stage, share in _split(float(d[row]), float(alive[row]), held).items():
            totals[stage] += share
    hours = trace.step / 3600.0
    return {stage: round(value * hours, 3) for stage, value in totals.items()}
