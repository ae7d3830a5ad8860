"""The SPEC Research Group elasticity figures, so that every controller is judged by the same arithmetic.

Per trace row (a step of equal length): demand D = ceil(value / (C x target)) instances, supply S =
ready instances.  theta_u/theta_o are the under/over-provisioned instance-steps as % of the demanded
ones; tau_u/tau_o the % of steps with S < D / S > D; instability the % of consecutive step pairs in
which S and D move in opposite directions; instance_hours counts every instance from its clone
request to its removal (pool members at their cost fraction); slo_violation_minutes the minutes in
which the load exceeds what the ready instances serve at 100 % (value > S x C).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from autoscaler.simulate import trace as trace_mod

_EPSILON = 1e-9
MORNING_HOURS = (6, 10)
"""Local hours [start, end) of the weekday morning window."""


@dataclass(frozen=True)
class Figures:
    """The elasticity figures of one run over one set of steps."""

    theta_u: float
    theta_o: float
    tau_u: float
    tau_o: float
    instability: float
    instance_hours: float
    slo_violation_minutes: float
    steps: int

    def as_dict(self) -> dict[str, float]:
        """The figures under their JSON keys."""
        return {k: float(v) for k, v in asdict(self).items()}


def demand(values: trace_mod.FloatArray, capacity: float, target: float) -> trace_mod.IntArray:
    """Instances needed per row to hold utilisation at `target` (ceil, ignoring float noise)."""
    exact = values / (capacity * target)
    return np.maximum(np.ceil(exact - _EPSILON), 0).astype(np.int64)


def morning_mask(trace: trace_mod.Trace) -> npt.NDArray[np.bool_]:
    """Rows inside Mon-Fri 06:00-10:00 in the trace's local time."""
    local = trace.local_times()
    days = local // 86400
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3 with Monday = 0)
    hour = (local % 86400) // 3600
    start, end = MORNING_HOURS
    return np.asarray((weekday < 5) & (hour >= start) & (hour < end))


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def _instability(
    trace: trace_mod.Trace, d: trace_mod.IntArray, s: trace_mod.IntArray, mask: npt.NDArray[np.bool_]
) -> float:
    pairs = mask[1:] & mask[:-1] & (np.diff(trace.times) == trace.step)
    opposite = (np.sign(np.diff(s)) * np.sign(np.diff(d))) < 0
    return _pct(float(np.count_nonzero(opposite & pairs)), float(np.count_nonzero(pairs)))


def figures(
    trace: trace_mod.Trace,
    supply: trace_mod.IntArray,
    alive: trace_mod.FloatArray,
    capacity: float,
    target: float,
    *,
    mask: npt.NDArray[np.bool_] | None = None,
) -> Figures:
    """The figures over the rows in `mask` (all rows when None)."""
    rows = np.ones(len(trace.times), dtype=np.bool_) if mask is None else mask
    d = demand(trace.values, capacity, target)
    total = float(d[rows].sum())
    under = np.maximum(d - supply, 0)[rows]
    over = np.maximum(supply - d, 0)[rows]
    count = int(np.count_nonzero(rows))
    violated = trace.values[rows] > supply[rows] * capacity + _EPSILON
    return Figures(
        theta_u=_pct(float(under.sum()), total),
        theta_o=_pct(float(over.sum()), total),
        tau_u=_pct(float(np.count_nonzero(under)), count),
        tau_o=_pct(float(np.count_nonzero(over)), count),
        instability=_instability(trace, d, supply, rows),
        instance_hours=float(alive[rows].sum()) * trace.step / 3600.0,
        slo_violation_minutes=float(np.count_nonzero(violated)) * trace.step / 60.0,
        steps=count,
    )


def halves(trace: trace_mod.Trace) -> dict[str, npt.NDArray[np.bool_]]:
    """Rows of the trace's first and second half in time: tune on the first, report on the second."""
    middle = trace.times[0] + (trace.times[-1] - trace.times[0]) // 2
    second = trace.times >= middle
    return {"first-half": ~second, "second-half": second}


def window_mask(trace: trace_mod.Trace, window: str) -> npt.NDArray[np.bool_] | None:
    """The rows a report judges: "whole" (None: every row), "first-half" or "second-half"."""
    if window == "whole":
        return None
    return halves(trace)[window]


WINDOWS = ("whole", "first-half", "second-half")
"""The windows a replay can be judged on."""


def whole_and_morning(
    trace: trace_mod.Trace,
    supply: trace_mod.IntArray,
    alive: trace_mod.FloatArray,
    capacity: float,
    target: float,
    rows: npt.NDArray[np.bool_] | None = None,
) -> dict[str, object]:
    """Figures over `rows` (all when None) at the top level, and its weekday mornings under "morning"."""
    mornings = morning_mask(trace) if rows is None else morning_mask(trace) & rows
    whole = figures(trace, supply, alive, capacity, target, mask=rows).as_dict()
    morning = figures(trace, supply, alive, capacity, target, mask=mornings).as_dict()
    return {**whole, "morning": morning}
