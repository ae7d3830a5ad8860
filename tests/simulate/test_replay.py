"""Replays through the real decision core: gaps are never zeros, the warm pool shortens scale-out."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler import model, simulate
from autoscaler.policy import spec
from autoscaler.simulate import engine, metrics, policy_run
from autoscaler.simulate import fleet as fleet_mod
from tests.simulate import helpers

SETUP = simulate.Setup(capacity=10.0, boot_time=60.0, report_delay=0.0)
"""Rows seen at their own timestamp, so the hand timings below count from the row itself."""


def test_a_gap_is_held_not_read_as_zero() -> None:
    high = [70.0] * 10
    gap: list[float | None] = [None] * 10
    trace = helpers.make_trace([*high, *gap, *high])
    run = simulate.run_policy(trace, helpers.policy(), SETUP)
    assert run.supply.tolist() == [10] * 20  # 20 present rows, never scaled in
    zeros = helpers.make_trace([*high, *([0.0] * 10), *high])
    shrunk = simulate.run_policy(zeros, helpers.policy(), SETUP)
    assert shrunk.supply.min() == 1  # the same policy does scale in on real zeros


def test_a_stale_reading_becomes_stale_input() -> None:
    check = helpers.policy().checks[0]
    reading = engine.Reading(35.0, 1000.0)
    fresh = policy_run.observe(check, reading, ready=5, capacity=10.0, now=1060.0)
    stale = policy_run.observe(check, reading, ready=5, capacity=10.0, now=1000.0 + check.max_staleness + 1)
    assert fresh == model.Fresh((model.Sample(0.7, 1000.0),))
    assert isinstance(stale, model.Stale)
    assert isinstance(policy_run.observe(check, None, 5, 10.0, 1.0), model.Missing)
    assert isinstance(policy_run.observe(check, reading, 0, 10.0, 1060.0), model.Missing)


def test_reactive_policy_follows_a_step_one_boot_later() -> None:
    trace = helpers.make_trace([7.0] * 5 + [70.0] * 10)
    run = simulate.run_policy(trace, helpers.policy(), SETUP)
    # the default scale-up rate allows +4 or +100 % per minute: 1 -> 5 -> 10
    assert run.supply[5] == 1
    assert run.supply.tolist()[-1] == 10


def _step_load() -> list[float]:
    return [7.0] * 30 + [35.0] * 30


def test_warm_pool_serves_a_scale_out_at_once_and_costs_its_fraction() -> None:
    trace = helpers.make_trace(_step_load(), step=60)
    slow = simulate.Setup(capacity=10.0, boot_time=180.0, report_delay=0.0)
    plain = helpers.policy(evaluation_interval=15.0, warmup=0.0)
    pooled = plain.model_copy(update={"warm_pool": spec.WarmPool(size=4, state="paused")})
    without = simulate.run_policy(trace, plain, slow)
    with_pool = simulate.run_policy(trace, pooled, slow)
    quality = [metrics.figures(trace, r.supply, r.alive, 10.0, 0.7) for r in (without, with_pool)]
    assert quality[0].slo_violation_minutes == 3  # the jump's minute, then two more while booting
    assert quality[1].slo_violation_minutes == 1  # resumed in 2 s: only the jump's own minute
    assert quality[1].instance_hours > quality[0].instance_hours  # four paused members at full cost
    free = simulate.Setup(capacity=10.0, boot_time=180.0, pool_cost=0.0, report_delay=0.0)
    cheap = simulate.run_policy(trace, pooled, free)
    assert np.array_equal(cheap.supply, with_pool.supply)
    assert cheap.alive.sum() < with_pool.alive.sum()


def test_shadow_forecast_is_scored_but_never_acted_on() -> None:
    day = [7.0] * 60 * 8 + [70.0] * 60 * 4 + [7.0] * 60 * 12  # one-minute rows, a 08:00-12:00 plateau
    trace = helpers.make_trace(day * 3)
    reactive = simulate.run_policy(trace, helpers.policy(), SETUP)
    shadow = helpers.policy(predictive=spec.Predictive(mode="shadow"))
    shadowed = simulate.run_policy(trace, shadow, SETUP)
    assert np.array_equal(reactive.supply, shadowed.supply)
    report = shadowed.extra["forecast"]
    assert isinstance(report, dict)
    assert report["mode"] == "shadow"
    assert report["forecasts"] > 0


def test_active_forecast_is_ready_before_the_ramp() -> None:
    day = [7.0] * 60 * 8 + [70.0] * 60 * 4 + [7.0] * 60 * 12
    trace = helpers.make_trace(day * 3)
    ramp = 2 * 1440 + 8 * 60  # 08:00 on the third day
    reactive = simulate.run_policy(trace, helpers.policy(), SETUP)
    ahead = simulate.run_policy(trace, helpers.policy(predictive=spec.Predictive(mode="active")), SETUP)
    assert reactive.supply[ramp] < 10
    assert ahead.supply[ramp] == 10
    assert ahead.supply[ramp - 30] == 1  # not hours early: one lead time


def test_a_row_is_seen_only_once_its_step_is_over() -> None:
    trace = helpers.make_trace([7.0] * 5 + [70.0] * 10)
    at_once = simulate.run_policy(trace, helpers.policy(), SETUP)
    honest = simulate.run_policy(trace, helpers.policy(), simulate.Setup(capacity=10.0, boot_time=60.0))
    first = [int(np.flatnonzero(r.supply >= 5)[0]) for r in (at_once, honest)]
    assert first[1] == first[0] + 1  # the jump's row is known one minute after it starts


class _AddOneAt:
    """Adds one member at a given second; nothing else."""

    name = "add-one"
    interval = 30

    def __init__(self, at: float) -> None:
        self.at = at

    def tick(self, now: float, reading: engine.Reading | None, fleet: fleet_mod.Fleet) -> None:
        if now == self.at:
            fleet.scale_out(1, now)


def test_late_capacity_does_not_count_for_its_step_but_is_billed_for_its_share() -> None:
    trace = helpers.make_trace([1.0, 1.0, 1.0], step=300)
    group = fleet_mod.Fleet("g", 60.0, fleet_mod.PoolModel(), 1, float(trace.times[0]))
    run = engine.replay(trace, _AddOneAt(float(trace.times[1]) + 30), group)
    assert run.supply.tolist() == [1, 1, 2]  # ready at 390 s: not for the whole of row 1
    assert run.alive.tolist() == pytest.approx([1.0, 1.9, 2.0])  # 9 of 10 ticks of row 1 with two


@pytest.mark.parametrize(
    ("step", "interval", "decisions"),
    [
        (300, 30.0, 40),  # four 5-minute rows: every 30 s, not every 300 s
        (300, 450.0, 3),  # at 0, 450 and 900 s: not rounded to every 600 s
        (300, 600.0, 2),
        (60, 60.0, 20),
    ],
)
def test_the_policy_is_evaluated_at_its_own_interval(step: int, interval: float, decisions: int) -> None:
    trace = helpers.make_trace([7.0] * (1200 // step), step=step)
    run = simulate.run_policy(trace, helpers.policy(evaluation_interval=interval), SETUP)
    assert run.extra["decisions"] == decisions


@pytest.mark.parametrize(
    ("step", "interval", "expected"),
    [(300, 30, (30, 1)), (300, 450, (150, 3)), (60, 120, (60, 2)), (60, 45, (15, 3))],
)
def test_replay_grid_holds_the_step_and_the_interval(
    step: int, interval: int, expected: tuple[int, int]
) -> None:
    assert engine.grid(step, interval) == expected
