"""Peer autoscalers, modelled compactly from their documented rules, to judge our policy against.

All hold utilisation at the same target (70 % by default).  HPA: the Kubernetes defaults (15 s
loop, 10 % tolerance, not-ready pods at 0 % on the way up, 300 s scale-down stabilization, up at
most max(+100 %, +4) per 15 s).  AWS: target tracking with its managed alarms (out after 3
consecutive one-minute breaches, in after 15 below 90 % of target, warming instances count toward
capacity and block scale-in; adds round up, removes round down; no data holds; with one policy,
"every policy agrees" is that policy).  Static: the peak demand all the time.  Oracle: perfect
foresight, every instance started exactly one boot time before it is needed.  A metric older than
`max_age` (two trace steps, at least 2 min) counts as missing for HPA and AWS alike.
"""

from __future__ import annotations

import math

import numpy as np

from autoscaler.simulate import engine, fleet, metrics
from autoscaler.simulate import trace as trace_mod

TARGET = 0.7
_EPSILON = 1e-9


def _ceil(x: float) -> int:
    return max(0, math.ceil(x - _EPSILON))


class Hpa:
    """The Kubernetes HorizontalPodAutoscaler's replica calculator and default behaviour."""

    name = "hpa"
    interval = 15

    def __init__(self, capacity: float, low: int, high: int, max_age: float, target: float = TARGET) -> None:
        self.capacity, self.low, self.high, self.target = capacity, low, high, target
        self.max_age = max_age
        self.tolerance = 0.1
        self.down_window = 300.0
        self.recommendations: list[tuple[float, int]] = []

    def _propose(self, reading: engine.Reading, fleet: fleet.Fleet) -> int:
        current, ready = fleet.current, fleet.ready
        if ready == 0:
            return current
        ratio = reading.value / (ready * self.capacity * self.target)
        if abs(ratio - 1.0) <= self.tolerance:
            return current
        if ratio > 1.0 and current > ready:
            # Not-ready pods are assumed idle on the way up; hold if that flips or tolerates the ratio.
            ratio = reading.value / (current * self.capacity * self.target)
            if ratio <= 1.0 + self.tolerance:
                return current
            return _ceil(ratio * current)
        return _ceil(ratio * ready)

    def tick(self, now: float, reading: engine.Reading | None, fleet: fleet.Fleet) -> None:
        """One HPA sync: propose, stabilize (max over 5 min going down), rate-limit, clamp."""
        if reading is None or now - reading.at > self.max_age:
            return  # no metrics: the HPA does not scale
        current = fleet.current
        proposal = self._propose(reading, fleet)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - self.down_window]
        self.recommendations.append((now, proposal))
        desired = proposal if proposal >= current else min(current, max(r for _, r in self.recommendations))
        desired = min(desired, max(2 * current, current + 4))
        desired = min(max(desired, self.low), self.high)
        if desired > current:
            fleet.scale_out(desired - current, now)
        elif desired < current:
            fleet.scale_in_newest(current - desired, now)


class AwsTargetTracking:
    """EC2 Auto Scaling target tracking with its managed one-minute CloudWatch alarms."""

    name = "aws"
    interval = 60

    def __init__(self, capacity: float, low: int, high: int, max_age: float, target: float = TARGET) -> None:
        self.capacity, self.low, self.high, self.target = capacity, low, high, target
        self.max_age = max_age
        self.high_breaches = 0
        self.low_breaches = 0

    def tick(self, now: float, reading: engine.Reading | None, fleet: fleet.Fleet) -> None:
        """One alarm period: count breaches, then scale out (any) or in (all agree, nothing warming)."""
        if reading is None or now - reading.at > self.max_age or fleet.ready == 0:
            self.high_breaches = self.low_breaches = 0  # INSUFFICIENT_DATA: nothing scales
            return
        utilisation = reading.value / (fleet.ready * self.capacity)
        self.high_breaches = self.high_breaches + 1 if utilisation > self.target else 0
        self.low_breaches = self.low_breaches + 1 if utilisation < 0.9 * self.target else 0
        exact = reading.value / (self.capacity * self.target)
        current = fleet.current
        if self.high_breaches >= 3:
            wanted = min(max(_ceil(exact), self.low), self.high)
            if wanted > current:
                fleet.scale_out(wanted - current, now)
        elif self.low_breaches >= 15 and fleet.ready == current:
            remove = math.floor(current - exact + _EPSILON)
            wanted = min(max(current - remove, self.low), self.high)
            if wanted < current:
                fleet.scale_in_newest(current - wanted, now)
                self.low_breaches = 0


def static(trace: trace_mod.Trace, capacity: float, target: float = TARGET) -> engine.Run:
    """Provisioned for the peak demand for the whole trace."""
    peak = int(metrics.demand(trace.values, capacity, target).max())
    rows = len(trace.times)
    return engine.Run("static", np.full(rows, peak, dtype=np.int64), np.full(rows, float(peak)), 0)


def _ahead(d: trace_mod.IntArray, times: trace_mod.IntArray, step: int, lag: int) -> trace_mod.IntArray:
    """Demand `lag` steps later at each row (0 where that row is absent)."""
    later = times + lag * step
    index = np.minimum(np.searchsorted(times, later), len(times) - 1)
    return np.where(times[index] == later, d[index], 0)


def oracle(trace: trace_mod.Trace, capacity: float, boot_time: float, target: float = TARGET) -> engine.Run:
    """Supply equals demand; each instance is cloned exactly one boot time before it serves (the lower bound).

    Cost per row: the demand, plus the instances booting during that step for the rows ahead, each for
    the fraction of the step it spends booting.
    """
    d = metrics.demand(trace.values, capacity, target)
    alive = d.astype(np.float64)
    reach = d.copy()
    for lag in range(1, math.ceil(boot_time / trace.step) + 1):
        share = min(max((boot_time - (lag - 1) * trace.step) / trace.step, 0.0), 1.0)
        further = np.maximum(reach, _ahead(d, trace.times, trace.step, lag))
        alive = alive + share * (further - reach)
        reach = further
    changes = int(np.abs(np.diff(d)).sum())
    return engine.Run("oracle", d.copy(), alive, changes)
