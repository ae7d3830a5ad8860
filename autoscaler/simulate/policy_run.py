"""Our policy in the replay: the very decision core the daemon runs, fed what its checks would observe.

The trace is the group's total load in the trace's unit and one instance serves `capacity` of it at
100 % utilisation.  A target_tracking check sees utilisation = load / (ready x capacity) (in percent
when its target is above 1.5, i.e. written in percent); every other check sees the load itself.
A row older than the check's max_staleness is Stale; before the first row, or with no ready member
for a utilisation, the input is Missing.  Nothing is ever read as zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoscaler import decide, forecast, model
from autoscaler.forecast import grid, nearterm, seasonal, shadow
from autoscaler.policy import spec
from autoscaler.simulate import attribution, engine, fleet
from autoscaler.simulate import trace as trace_mod

DEFAULT_TARGET = 0.7


def target_utilisation(policy: spec.GroupPolicy, capacity: float) -> float:
    """The utilisation the policy aims at: its first target_tracking or per_instance check, else 70 %."""
    for check in policy.checks:
        strategy = check.strategy
        if isinstance(strategy, spec.TargetTracking):
            return strategy.target / 100.0 if strategy.target > 1.5 else strategy.target
        if isinstance(strategy, spec.PerInstance):
            return strategy.per_instance / capacity
    return DEFAULT_TARGET


def ready_delay(policy: spec.GroupPolicy, boot_time: float) -> float:
    """Seconds from clone to capacity: the guest must be up (boot) and the warm-up must have passed."""
    return max(boot_time, policy.warmup)


def evaluation_seconds(policy: spec.GroupPolicy) -> int:
    """The policy's evaluation interval in whole seconds (the replay's clock), at least one."""
    return max(1, round(policy.evaluation_interval))


def observe(
    check: spec.Check, reading: engine.Reading | None, ready: int, capacity: float, now: float
) -> model.CheckInput:
    """What `check` would get from its source at `now` in the simulated world."""
    if reading is None:
        return model.Missing("no data yet")
    if now - reading.at > check.max_staleness:
        return model.Stale(now - reading.at)
    value = reading.value
    if isinstance(check.strategy, spec.TargetTracking):
        if ready == 0:
            return model.Missing("no ready member")
        value = reading.value / (ready * capacity)
        if check.strategy.target > 1.5:
            value *= 100.0
    return model.Fresh((model.Sample(value, reading.at),))


@dataclass(frozen=True)
class ForecastSetup:
    """How the replay forecasts: model parameters, lead, span and the load one instance carries."""

    params: seasonal.Params | nearterm.Params
    lead: float
    span: float
    per_instance: float
    headroom: float
    active: bool
    """False: forecast-only (shadow), scored but not acted on."""
    known_after: float = 0.0
    """Seconds after a row's timestamp until it is known: the forecast never reads a newer row."""
    calibration: shadow.Calibration | None = None
    """Online calibration of the forecast's margin from its measured error (None: off)."""


class Forecaster:
    """The seasonal forecast over the trace's past, scored against what came (shadow bookkeeping)."""

    def __init__(self, trace: trace_mod.Trace, setup: ForecastSetup) -> None:
        self.setup = setup
        self.offset = trace.utc_offset
        self.series = grid.from_arrays(trace.times.astype(np.float64), trace.values, float(trace.step))
        self.book = shadow.Book()
        self._cache: dict[tuple[int, int, int], float | None] = {}

    def load(self, known: float, start: float, end: float) -> float | None:
        """The model's peak over [start, end] from rows known by `known` (cached per grid cell)."""
        series, params = self.series, self.setup.params
        key = (series.last_known(known), series.index(start), series.index(end))
        if key not in self._cache:
            if isinstance(params, nearterm.Params):
                value = nearterm.peak(series, known, start, end, params=params, zone=float(self.offset))
            else:
                value = seasonal.peak(series, known, start, end, params=params, utc_offset=self.offset)
            self._cache = {key: value}
        return self._cache[key]

    def floor(self, now: float, reading: engine.Reading | None) -> int | None:
        """Instances the forecast asks for one lead time ahead (None without history or in shadow mode)."""
        if reading is not None:
            self.book = self.book.settle(
                reading.at - self.setup.known_after, reading.value, self.setup.calibration
            )
        start, end = now + self.setup.lead, now + self.setup.lead + self.setup.span
        load = self.load(now - self.setup.known_after, start, end)
        if load is None:
            return None
        load *= self.book.margin
        self.book = self.book.expect(start, end, load)
        if not self.setup.active:
            return None
        return forecast.instances(load, self.setup.per_instance, self.setup.headroom)

    def summary(self) -> dict[str, object]:
        """The forecast error figures for the report."""
        score = self.book.score
        return {
            "model": self.setup.params.name,
            "mode": "active" if self.setup.active else "shadow",
            "lead_seconds": self.setup.lead,
            "forecasts": score.count,
            "wape": score.wape,
            "under_forecast_pct": score.under_ratio,
            "margin": self.book.margin,
        }


class PolicyController:
    """Drives `decide.evaluate` as the daemon would, acting on every decision (the simulation is active)."""

    def __init__(
        self, policy: spec.GroupPolicy, capacity: float, forecaster: Forecaster | None, name: str
    ) -> None:
        self.name = name
        self.policy = policy
        self.capacity = capacity
        self.interval = evaluation_seconds(policy)
        self.forecaster = forecaster
        self.memory = model.GroupMemory()
        self.decisions = 0
        self.ledger = attribution.Ledger()

    def tick(self, now: float, reading: engine.Reading | None, fleet: fleet.Fleet) -> None:
        """One evaluation: observe, decide, act, and record the change in the memory."""
        inputs = {c.name: observe(c, reading, fleet.ready, self.capacity, now) for c in self.policy.checks}
        floor = self.forecaster.floor(now, reading) if self.forecaster is not None else None
        decision, self.memory = decide.evaluate(
            self.policy, fleet.inventory(), inputs, self.memory, now, forecast=floor
        )
        self.decisions += 1
        self.ledger.record(decision)
        delta = decision.desired - decision.current
        if delta > 0:
            fleet.scale_out(delta, now)
        elif delta < 0:
            delta = -fleet.scale_in(decision.victims, now)
        self.memory = self.memory.record_change(now, delta)
