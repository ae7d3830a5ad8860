"""The decision pipeline stage by stage: each test names the stage it expects in the trail."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from autoscaler import decide, model
from tests.decide.builders import CPU_CHECK, fleet, fresh, policy

NOW = 1_764_000_000.0  # 2025-11-24, a Monday, 16:00 UTC
SESSIONS_CHECK: dict[str, Any] = {
    "name": "sessions",
    "source": "prometheus",
    "query": "sum(sessions)",
    "strategy": {"kind": "per_instance", "per_instance": 100},
}


def evaluate(
    group: Any,
    inventory: model.GroupInventory,
    inputs: dict[str, model.CheckInput],
    memory: model.GroupMemory | None = None,
    now: float = NOW,
    forecast: int | None = None,
) -> tuple[model.Decision, model.GroupMemory]:
    return decide.evaluate(group, inventory, inputs, memory or model.GroupMemory(), now, forecast=forecast)


def stages(decision: model.Decision) -> list[str]:
    return [s.name for s in decision.trail]


def test_scale_out_on_high_load() -> None:
    decision, _ = evaluate(policy(), fleet(4), {"cpu": fresh(0.9, NOW)})
    assert decision.desired == 8
    assert decision.direction is model.Direction.UP
    assert decision.reason.startswith("scale up 4 -> 8")


@pytest.mark.parametrize(
    ("check_input", "kind"),
    [
        (model.Missing("empty"), "missing"),
        (model.Fresh(()), "missing"),
        (model.Fresh((model.Sample(float("nan"), NOW),)), "missing"),
        (model.Fresh((model.Sample(float("inf"), NOW),)), "missing"),
        (model.Fresh((model.Sample(0.0, NOW - 600),)), "stale"),
        (model.Failed("unavailable"), "failed"),
    ],
)
def test_unusable_data_is_never_read_as_zero(check_input: model.CheckInput, kind: str) -> None:
    decision, _ = evaluate(policy(), fleet(6), {"cpu": check_input})
    assert decision.desired == 6
    assert decision.checks[0].kind == kind
    assert "on_missing hold" in decision.checks[0].detail


def test_on_missing_scale_up_adds_instances() -> None:
    check = {**CPU_CHECK, "on_missing": {"scale_up": 2}}
    decision, _ = evaluate(policy(checks=[check]), fleet(6), {"cpu": model.Failed("unavailable")})
    assert decision.desired == 8


def test_on_missing_fallback_never_shrinks() -> None:
    check = {**CPU_CHECK, "on_missing": {"fallback": 3}}
    group = policy(checks=[check])
    assert evaluate(group, fleet(6), {"cpu": model.Missing()})[0].desired == 6
    assert evaluate(group, fleet(1), {"cpu": model.Missing()})[0].desired == 3


def test_combine_takes_the_largest_proposal() -> None:
    group = policy(checks=[CPU_CHECK, SESSIONS_CHECK])
    decision, _ = evaluate(group, fleet(4), {"cpu": fresh(0.6, NOW), "sessions": fresh(900, NOW)})
    assert [c.proposal for c in decision.checks] == [5, 9]
    assert decision.desired == 9


def test_scale_in_only_when_every_check_is_fresh_and_agrees() -> None:
    group = policy(checks=[CPU_CHECK, SESSIONS_CHECK])
    low = {"cpu": fresh(0.1, NOW), "sessions": fresh(100, NOW)}
    assert evaluate(group, fleet(8), low)[0].desired < 8
    one_missing = {"cpu": fresh(0.1, NOW), "sessions": model.Missing()}
    decision, _ = evaluate(group, fleet(8), one_missing)
    assert decision.desired == 8
    assert "combine" in stages(decision)
    assert "sessions not fresh" in decision.trail[0].reason
    assert (decision.trail[0].before, decision.trail[0].after) == (2, 8)  # held back from cpu's 2


def test_scale_in_takes_the_smallest_reduction() -> None:
    group = policy(checks=[CPU_CHECK, SESSIONS_CHECK])
    decision, _ = evaluate(group, fleet(8), {"cpu": fresh(0.1, NOW), "sessions": fresh(500, NOW)})
    assert decision.desired == 5


def test_bounds_are_enforced_whatever_the_metrics_say() -> None:
    group = policy(min=3, max=6)
    below, _ = evaluate(group, fleet(1), {"cpu": model.Missing()})
    assert below.desired == 3
    assert stages(below)[0] == "bounds_guard"
    above, _ = evaluate(group, fleet(9), {"cpu": fresh(0.9, NOW)})
    assert above.desired == 6


def test_schedule_floor_raises_the_count_during_office_hours() -> None:
    window = {
        "name": "office",
        "cron": "30 7 * * mon-fri",
        "timezone": "Europe/Berlin",
        "duration": "10h",
        "min": 8,
    }
    group = policy(schedules=[window])
    monday_0800_berlin = 1_763_967_600.0  # 2025-11-24 08:00 CET
    inside, _ = evaluate(group, fleet(2), {"cpu": fresh(0.5, monday_0800_berlin)}, now=monday_0800_berlin)
    assert inside.desired == 8
    assert "schedule" in stages(inside)
    evening = monday_0800_berlin + 11 * 3600
    outside, _ = evaluate(group, fleet(2), {"cpu": fresh(0.5, evening)}, now=evening)
    assert outside.desired == 2


def test_schedule_ceiling_caps_the_count() -> None:
    window = {"cron": "0 0 * * *", "timezone": "UTC", "duration": "1d", "max": 4}
    decision, _ = evaluate(policy(schedules=[window]), fleet(4), {"cpu": fresh(0.9, NOW)})
    assert decision.desired == 4


def test_forecast_scales_out_ahead_but_never_in() -> None:
    ahead, _ = evaluate(policy(), fleet(4), {"cpu": fresh(0.5, NOW)}, forecast=9)
    assert ahead.desired == 9
    assert "forecast" in stages(ahead)
    low, _ = evaluate(policy(), fleet(8), {"cpu": fresh(0.5, NOW)}, forecast=2)
    assert low.desired == 8


def down_window_policy() -> Any:
    return policy(scale_down={"stabilization": "5m"})


def test_scale_down_stabilization_uses_the_highest_recent_recommendation() -> None:
    group = down_window_policy()
    memory = model.GroupMemory()
    _, memory = evaluate(group, fleet(8), {"cpu": fresh(0.5, NOW)}, memory)
    decision, memory = evaluate(group, fleet(8), {"cpu": fresh(0.1, NOW + 60)}, memory, NOW + 60)
    assert decision.desired == 8
    assert "stabilization" in stages(decision)
    assert decision.trail[-1].reason == "highest recommendation in the 5m scale-down window"
    _, memory = evaluate(group, fleet(8), {"cpu": fresh(0.1, NOW + 200)}, memory, NOW + 200)
    later, _ = evaluate(group, fleet(8), {"cpu": fresh(0.1, NOW + 400)}, memory, NOW + 400)
    assert later.desired == 2


def test_first_evaluation_after_a_start_does_not_shrink_within_the_down_window() -> None:
    decision, _ = evaluate(down_window_policy(), fleet(8), {"cpu": fresh(0.1, NOW)})
    assert decision.desired == 8


def test_scale_up_stabilization_uses_the_lowest_recent_recommendation() -> None:
    group = policy(scale_up={"stabilization": "2m"})
    _, memory = evaluate(group, fleet(4), {"cpu": fresh(0.5, NOW)})
    decision, _ = evaluate(group, fleet(4), {"cpu": fresh(1.0, NOW + 30)}, memory, NOW + 30)
    assert decision.desired == 4


@pytest.mark.parametrize(
    ("rate", "current", "moved", "expected"),
    [
        ({"instances": 2, "period": "1m"}, 4, 0, 6),
        ({"instances": 2, "period": "1m"}, 4, 2, 4),  # budget used up within the period
        ({"percent": 100, "period": "1m"}, 3, 0, 6),
        ({"instances": 4, "percent": 50, "period": "1m"}, 10, 0, 15),  # the larger allowance wins
        ({"percent": 10, "period": "1m"}, 1, 0, 2),  # never stuck: at least one
    ],
)
def test_scale_up_rate_limit(rate: dict[str, Any], current: int, moved: int, expected: int) -> None:
    group = policy(scale_up={"rate": rate})
    changes = (model.Change(NOW - 10, moved),) if moved else ()
    memory = model.GroupMemory(changes=changes)
    decision, _ = evaluate(group, fleet(current), {"cpu": fresh(5.0, NOW)}, memory)
    assert decision.desired == expected


@pytest.mark.parametrize(
    ("rate", "current", "moved", "expected"),
    [
        ({"instances": 1, "period": "5m"}, 8, 0, 7),
        ({"percent": 10, "period": "1m"}, 5, 0, 4),  # 10 % of 5 rounds down to 0: still one
        ({"percent": 10, "period": "1m"}, 20, 0, 18),
        ({"percent": 10, "period": "1m"}, 5, 1, 5),  # the one of this period is spent
    ],
)
def test_scale_down_rate_limit(rate: dict[str, Any], current: int, moved: int, expected: int) -> None:
    group = policy(scale_down={"rate": rate})
    memory = model.GroupMemory(changes=(model.Change(NOW - 10, -moved),) if moved else ())
    decision, _ = evaluate(group, fleet(current), {"cpu": fresh(0.05, NOW)}, memory)
    assert decision.desired == expected
    assert "rate_limit" in stages(decision)


@pytest.mark.parametrize(
    ("spent", "load", "current", "expected"),
    [
        ((), 5.0, 4, 12),  # nothing spent: 8 at once (the checks want 40)
        (((-60, 3), (-30, -2)), 5.0, 4, 7),  # 5 of 8 spent, both directions count
        (((-60, 8),), 5.0, 4, 4),  # spent: hold
        (((-4000, 8),), 5.0, 4, 12),  # spent before the period: free again
        (((-60, 6),), 0.05, 8, 6),  # scale-in spends it too (the checks want 1)
    ],
)
def test_churn_budget(spent: tuple[tuple[int, int], ...], load: float, current: int, expected: int) -> None:
    group = policy(churn_budget={"max_changes": 8, "period": "1h"}, scale_down={"rate": None})
    memory = model.GroupMemory(changes=tuple(model.Change(NOW + at, delta) for at, delta in spent))
    decision, _ = evaluate(group, fleet(current), {"cpu": fresh(load, NOW)}, memory)
    assert decision.desired == expected
    assert "churn_budget" in stages(decision)


def test_churn_budget_never_holds_a_group_below_its_min() -> None:
    group = policy(min=6, churn_budget={"max_changes": 2, "period": "1h"})
    memory = model.GroupMemory(changes=(model.Change(NOW - 60, 2),))
    decision, _ = evaluate(group, fleet(3), {"cpu": fresh(0.1, NOW)}, memory)
    assert decision.desired == 6


def test_changes_are_kept_for_the_churn_period() -> None:
    group = policy(churn_budget={"max_changes": 8, "period": "2h"})
    memory = model.GroupMemory(changes=(model.Change(NOW - 5000, 3),))
    _, kept = evaluate(group, fleet(4), {"cpu": fresh(0.5, NOW)}, memory)
    assert kept.changes == memory.changes


def test_cooldown_per_direction() -> None:
    group = policy(scale_up={"cooldown": "2m"}, scale_down={"cooldown": "5m"})
    recent_up = model.GroupMemory(last_up_at=NOW - 60)
    held, _ = evaluate(group, fleet(4), {"cpu": fresh(0.9, NOW)}, recent_up)
    assert held.desired == 4
    assert stages(held) == ["cooldown"]
    # A recent scale-up does not hold a scale-in, and vice versa.
    down, _ = evaluate(group, fleet(8), {"cpu": fresh(0.1, NOW)}, recent_up)
    assert down.desired < 8


def test_members_warming_up_block_scale_in_but_not_scale_out() -> None:
    inventory = fleet(4, booting=2)
    held, _ = evaluate(policy(), inventory, {"cpu": fresh(0.05, NOW)})
    assert held.desired == 6
    assert "warmup" in stages(held)
    grown, _ = evaluate(policy(), inventory, {"cpu": fresh(1.0, NOW)})
    assert grown.desired == 8


def test_min_lifetime_protects_young_members() -> None:
    group = policy(min_lifetime="10m")
    young = fleet(6, created_at=NOW - 60)
    decision, _ = evaluate(group, young, {"cpu": fresh(0.05, NOW)})
    assert decision.desired == 6
    assert "min_lifetime" in stages(decision)


def test_capacity_clips_scale_out_with_its_reason() -> None:
    decision, _ = evaluate(policy(), fleet(4, headroom=1), {"cpu": fresh(1.0, NOW)})
    assert decision.desired == 5
    assert decision.trail[-1].name == "capacity"
    assert "capacity_limited" in decision.trail[-1].reason


@pytest.mark.parametrize("mode", ["dry_run", "paused"])
def test_dry_run_and_paused_decide_without_acting(mode: str) -> None:
    decision, _ = evaluate(policy(**{mode: True}), fleet(4), {"cpu": fresh(0.9, NOW)})
    assert decision.desired == 8
    assert not decision.act
    assert stages(decision)[-1] == mode


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("newest", ("web-5", "web-4")),
        ("oldest", ("web-0", "web-1")),
        ("least_loaded", ("web-0", "web-1")),  # loads 0.0, 0.1, ... by index
    ],
)
def test_victims_follow_the_policy_order(order: str, expected: tuple[str, ...]) -> None:
    group = policy(scale_in_order=order)
    decision, _ = evaluate(group, fleet(6), {"cpu": fresh(0.3, NOW)})
    assert decision.desired == 4
    assert decision.victims == expected


def test_failed_members_go_first() -> None:
    decision, _ = evaluate(policy(), fleet(5, failed=1), {"cpu": fresh(0.1, NOW)})
    assert decision.victims[0] == "web-5"


def test_members_of_an_old_golden_image_go_before_current_ones() -> None:
    members = fleet(6)
    old = {"web-1", "web-3"}
    mixed = dataclasses.replace(
        members,
        instances=tuple(dataclasses.replace(i, outdated=i.name in old) for i in members.instances),
    )
    decision, _ = evaluate(policy(scale_in_order="newest"), mixed, {"cpu": fresh(0.3, NOW)})
    assert decision.victims == ("web-3", "web-1")  # the policy's order among the outdated ones


def test_decision_records_inputs_and_reason() -> None:
    decision, _ = evaluate(policy(), fleet(4), {"cpu": fresh(0.9, NOW)})
    assert decision.checks == (model.CheckReport("cpu", "fresh", 0.9, 8, "ceil(4 * 0.9 / 0.5) = 8"),)
    assert "cpu" in decision.reason


@pytest.mark.parametrize(
    ("interval", "stored", "expected"),
    [
        ("30s", (), 10),  # first start: hold for the down window
        ("30s", ((-3600, 10),), 10),  # restart after an hour: the stored memory is out of date, hold
        ("30s", ((-400, 10),), 10),  # newest stored entry just beyond the 5m window
        ("30s", ((-400, 10), (-30, 2)), 9),  # memory kept up to date and the 10 has left the window
        ("30s", ((-60, 10),), 10),  # up to date, the 10 is still in the window
        ("10m", ((-600, 10),), 9),  # interval longer than the window: the previous evaluation counts
    ],
)
def test_a_restart_with_old_memory_does_not_shrink_within_the_down_window(
    interval: str, stored: tuple[tuple[float, int], ...], expected: int
) -> None:
    group = policy(
        evaluation_interval=interval,
        scale_down={"stabilization": "5m", "rate": {"instances": 1, "period": "1m"}},
    )
    memory = model.GroupMemory(tuple((NOW + at, count) for at, count in stored))
    decision, _ = evaluate(group, fleet(10), {"cpu": fresh(0.1, NOW)}, memory)
    assert decision.desired == expected


THRESHOLD_CHECK: dict[str, Any] = {
    "name": "load",
    "source": "prometheus",
    "query": "avg(load)",
    "strategy": {"kind": "threshold", "trigger_samples": 3, "steps": [{"lower": 0.8, "change": 1}]},
}


@pytest.mark.parametrize(
    ("ticks", "expected"),
    [
        # One instant-query sample per evaluation: (value or None for missing, sample age in ticks).
        (((0.9, 0), (0.9, 0), (0.9, 0)), [4, 4, 5]),
        (((0.9, 0), (0.5, 0), (0.9, 0), (0.9, 0), (0.9, 0)), [4, 4, 4, 4, 5]),
        (((0.9, 0), (None, 0), (0.9, 0), (0.9, 0)), [4, 4, 4, 4]),  # missing data restarts the count
        (((0.9, 0), (0.9, 1), (0.9, 2)), [4, 4, 4]),  # the same sample seen again counts once
    ],
)
def test_threshold_trigger_samples_count_across_evaluations(
    ticks: tuple[tuple[float | None, int], ...], expected: list[int]
) -> None:
    group = policy(checks=[THRESHOLD_CHECK])
    memory = model.GroupMemory()
    desired: list[int] = []
    for index, (value, age) in enumerate(ticks):
        now = NOW + 30 * index
        check_input = model.Missing("empty") if value is None else fresh(value, now - 30 * age)
        decision, memory = evaluate(group, fleet(4), {"load": check_input}, memory, now)
        desired.append(decision.desired)
    assert desired == expected
