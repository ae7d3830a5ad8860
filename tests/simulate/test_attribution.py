"""Over-provisioned instance-hours are charged to the stage that held the capacity, read from the trails."""

from __future__ import annotations

from autoscaler import decide, model, simulate
from autoscaler.policy import spec
from autoscaler.simulate import attribution, metrics
from tests.decide.builders import fleet, fresh
from tests.decide.builders import policy as core_policy
from tests.simulate.helpers import make_trace, policy

NOW = 1_764_000_000.0


def test_forecast_band_is_what_the_forecast_raised() -> None:
    decision, _ = decide.evaluate(
        core_policy(), fleet(4), {"cpu": fresh(0.5, NOW)}, model.GroupMemory(), NOW, forecast=8
    )
    assert attribution.bands(decision) == (("forecast_floor", 4, 8),)


def test_a_later_stage_that_lowers_the_count_cuts_the_bands_above() -> None:
    group = core_policy(scale_up={"rate": {"instances": 2, "period": "1m"}})
    decision, _ = decide.evaluate(
        group, fleet(4), {"cpu": fresh(0.5, NOW)}, model.GroupMemory(), NOW, forecast=10
    )
    assert decision.desired == 6
    assert attribution.bands(decision) == (("forecast_floor", 4, 6),)


def test_stabilization_holds_the_band_between_the_proposal_and_the_window_maximum() -> None:
    group = core_policy(scale_down={"stabilization": "5m"})
    memory = model.GroupMemory(recommendations=((NOW - 60, 10),))
    decision, _ = decide.evaluate(group, fleet(10), {"cpu": fresh(0.25, NOW)}, memory, NOW)
    assert attribution.bands(decision) == (("scale_down_stabilization", 5, 10),)


def test_missing_data_holds_the_whole_group() -> None:
    decision, _ = decide.evaluate(core_policy(), fleet(6), {"cpu": model.Missing()}, model.GroupMemory(), NOW)
    assert attribution.bands(decision) == (("on_missing", 0, 6),)


def _held(**changes: object) -> dict[str, float]:
    # An hour at 10 instances' worth of load, then an hour at 2: only a held scale-in over-provisions.
    trace = make_trace([700.0] * 60 + [140.0] * 60)
    run = simulate.run_policy(trace, policy(**changes), simulate.Setup(capacity=100.0))
    assert run.ledger is not None
    return attribution.over_provisioned(trace, run.alive, run.ledger, 100.0, 0.7)


def test_replay_charges_a_held_scale_in_to_its_stage() -> None:
    fast = _held()
    slow = _held(scale_down=spec.Direction(stabilization=1800.0))
    assert fast["scale_down_stabilization"] == 0.0
    # 30 minutes at 10 instances instead of 2 (less the minutes the load needs to be seen falling)
    assert 3.0 <= slow["scale_down_stabilization"] <= 4.0
    assert set(slow) == set(attribution.ORDER)
    total_over = sum(slow.values())
    assert total_over >= slow["scale_down_stabilization"]


def test_the_attributed_hours_add_up_to_the_hours_paid_above_demand() -> None:
    trace = make_trace([700.0] * 60 + [140.0] * 60)
    run = simulate.run_policy(
        trace, policy(scale_down=spec.Direction(stabilization=1800.0)), simulate.Setup(100.0)
    )
    assert run.ledger is not None
    held = attribution.over_provisioned(trace, run.alive, run.ledger, 100.0, 0.7)
    demand = metrics.demand(trace.values, 100.0, 0.7)
    paid_above = float((run.alive - demand).clip(min=0).sum()) * trace.step / 3600
    assert abs(sum(held.values()) - paid_above) < 0.01
