"""A bounded in-memory history of one group, fed by each tick: what the console draws its charts from.

The journal keeps the last decisions with their trails; this keeps the last hours of numbers:
the group's size (current, ready, desired), its load and the capacity of its ready members in the
unit of its sizing check, the forecast made for each instant, and the measured clone-to-ready
time of each member. Points older than `max_age` or beyond `max_points` are dropped, so a group
costs some 200 KB at most, whatever its evaluation interval (bench/console.py).

Load and capacity are totals in the unit of the first check that sizes by a target: a
`per_instance` check's value is the total already (capacity = ready x per_instance); a
`target_tracking` check's value is the average over ready members (load = value x ready, capacity
= target x ready). Without such a check, the first check's value is the load and there is no
capacity line. The forecast is the predictive query's, for the same instant (made `lead` seconds
earlier), so it sits on the load it tried to foresee.
"""

from __future__ import annotations

import array
import bisect
import collections
import math
import statistics
from dataclasses import dataclass
from typing import Any

from autoscaler import model
from autoscaler.policy import spec

MAX_POINTS = 2880
"""Points kept per group: six hours at a 7.5 s evaluation interval."""
MAX_AGE = 6 * 3600.0
"""Seconds of history kept per group."""
MAX_READY_TIMES = 200
"""Clone-to-ready measurements kept per group."""


@dataclass(frozen=True, slots=True)
class Point:
    """The group as one tick saw it."""

    at: float
    current: int
    ready: int
    desired: int
    load: float | None
    """Total load in the sizing check's unit, None when the check had no value."""
    capacity: float | None
    """What the ready members carry at the check's target, None without a sizing check."""
    forecast: float | None
    """The load forecast for this instant (made `lead` seconds earlier), None without one."""


COUNTS = ("current", "ready", "desired")
MEASURES = ("load", "capacity", "forecast")
COLUMNS = ("at", *COUNTS, *MEASURES)


@dataclass(frozen=True, slots=True)
class ReadyTime:
    """How long one member took from its clone request to its first ready."""

    name: str
    ready_at: float
    seconds: float


@dataclass(frozen=True, slots=True)
class Basis:
    """Which check the load and capacity come from, and how one member's share is set."""

    check: str
    kind: str
    per_member: float | None
    """The load one ready member carries at the target (None: no capacity line)."""


def basis(policy: spec.GroupPolicy) -> Basis | None:
    """The first check that sizes by a target, else the first check with a metric, else None."""
    for check in policy.checks:
        strategy = check.strategy
        if isinstance(strategy, spec.PerInstance):
            return Basis(check.name, strategy.kind, strategy.per_instance)
        if isinstance(strategy, spec.TargetTracking):
            return Basis(check.name, strategy.kind, strategy.target)
    for check in policy.checks:
        if not isinstance(strategy := check.strategy, spec.Fixed):
            return Basis(check.name, strategy.kind, None)
    return None


def load_and_capacity(
    found: Basis | None, decision: model.Decision, ready: int
) -> tuple[float | None, float | None]:
    """The decision's load as a total and the ready members' capacity, by `found`."""
    if found is None:
        return None, None
    value = next((c.value for c in decision.checks if c.name == found.check), None)
    if value is not None and not math.isfinite(value):
        value = None  # JSON has no NaN; the core reads it as missing too
    capacity = found.per_member * ready if found.per_member is not None else None
    if value is None or found.kind != "target_tracking":
        return value, capacity
    return (value * ready if ready else None), capacity


class History:
    """One group's recent points, kept as columns of doubles (NaN for none), and clone-to-ready times."""

    def __init__(
        self, max_points: int = MAX_POINTS, max_age: float = MAX_AGE, max_ready_times: int = MAX_READY_TIMES
    ) -> None:
        self.max_points = max_points
        self.max_age = max_age
        self._columns = {name: array.array("d") for name in COLUMNS}
        """Eight bytes a value: a third of what Point objects with float fields would take."""
        self.ready_times: collections.deque[ReadyTime] = collections.deque(maxlen=max_ready_times)
        self.basis: Basis | None = None
        self._forecasts: collections.deque[tuple[float, float]] = collections.deque(maxlen=max_points)
        """(instant forecast for, load forecast), oldest first, until that instant is recorded."""
        self._counted: set[str] = set()
        """Members whose ready time is already measured (only current members are remembered)."""

    def record(
        self,
        decision: model.Decision,
        inventory: model.GroupInventory,
        policy: spec.GroupPolicy,
        forecast: tuple[float, float] | None = None,
    ) -> Point:
        """Add the tick of `decision`; `forecast` is (instant it is for, load) when one was made."""
        at = decision.at
        self.basis = basis(policy)
        load, capacity = load_and_capacity(self.basis, decision, inventory.ready)
        point = Point(at, inventory.current, inventory.ready, decision.desired, load, capacity, self._due(at))
        if forecast is not None:
            self._forecasts.append(forecast)
        for name, column in self._columns.items():
            value = getattr(point, name)
            column.append(math.nan if value is None else value)
        self._trim(at - self.max_age)
        self._measure(inventory)
        return point

    def _trim(self, horizon: float) -> None:
        times = self._columns["at"]
        drop = max(len(times) - self.max_points, bisect.bisect_left(times, horizon))
        if drop > 0:
            for column in self._columns.values():
                del column[:drop]

    def __len__(self) -> int:
        return len(self._columns["at"])

    @property
    def points(self) -> list[Point]:
        """The points kept, oldest first."""
        return [self._point(index) for index in range(len(self))]

    def _point(self, index: int) -> Point:
        c = self._columns
        counts = (int(c["current"][index]), int(c["ready"][index]), int(c["desired"][index]))
        return Point(c["at"][index], *counts, *(_none(c[name][index]) for name in MEASURES))

    def _due(self, at: float) -> float | None:
        """The newest forecast made for an instant up to `at` (older ones are dropped with it)."""
        due: float | None = None
        while self._forecasts and self._forecasts[0][0] <= at:
            due = self._forecasts.popleft()[1]
        return due

    def _measure(self, inventory: model.GroupInventory) -> None:
        names = {i.name for i in inventory.instances}
        self._counted &= names
        for instance in inventory.instances:
            if instance.ready_at is None or instance.name in self._counted:
                continue
            self._counted.add(instance.name)
            seconds = max(0.0, instance.ready_at - instance.created_at)
            self.ready_times.append(ReadyTime(instance.name, instance.ready_at, seconds))

    def to_dict(self, since: float | None = None) -> dict[str, Any]:
        """JSON-ready: the points as columns (newer than `since` when given), and the ready times."""
        times = self._columns["at"]
        first = 0 if since is None else bisect.bisect_right(times, since)
        columns: dict[str, list[Any]] = {"at": times[first:].tolist()}
        columns.update({name: [int(v) for v in self._columns[name][first:]] for name in COUNTS})
        columns.update({name: [_none(v) for v in self._columns[name][first:]] for name in MEASURES})
        return {
            "span_seconds": self.max_age,
            "basis": None if self.basis is None else _basis_dict(self.basis),
            "points": columns,
            "clone_to_ready": ready_summary(list(self.ready_times)),
        }


def _none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _basis_dict(found: Basis) -> dict[str, Any]:
    return {"check": found.check, "kind": found.kind, "per_member": found.per_member}


def ready_summary(times: list[ReadyTime]) -> dict[str, Any]:
    """Count, median, 90th percentile and max of the measured clone-to-ready seconds, and the newest."""
    seconds = sorted(t.seconds for t in times)
    summary: dict[str, Any] = {"count": len(seconds), "median": None, "p90": None, "max": None}
    if seconds:
        summary["median"] = statistics.median(seconds)
        summary["p90"] = seconds[min(len(seconds) - 1, round(0.9 * (len(seconds) - 1)))]
        summary["max"] = seconds[-1]
    newest = sorted(times, key=lambda t: t.ready_at, reverse=True)[:20]
    summary["recent"] = [{"name": t.name, "ready_at": t.ready_at, "seconds": t.seconds} for t in newest]
    return summary
