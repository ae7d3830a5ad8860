"""Properties of the decision core that must hold for any policy, fleet and input."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler import decide, model
from tests.decide.builders import CPU_CHECK, fleet, policy

NOW = 1_764_000_000.0
SESSIONS = {
    "name": "sessions",
    "source": "prometheus",
    "query": "sum(sessions)",
    "strategy": {"kind": "per_instance", "per_instance": 50},
}

inputs_strategy = st.one_of(
    st.floats(min_value=0.0, max_value=5.0).map(lambda v: model.Fresh((model.Sample(v, NOW),))),
    st.just(model.Missing("empty")),
    st.just(model.Failed("unavailable")),
    st.floats(min_value=121, max_value=3600).map(lambda age: model.Fresh((model.Sample(0.1, NOW - age),))),
    st.just(model.Fresh((model.Sample(float("nan"), NOW),))),
)


@st.composite
def group_policies(draw: st.DrawFn) -> Any:
    low = draw(st.integers(0, 10))
    high = draw(st.integers(low, 30))
    floor = draw(st.one_of(st.none(), st.integers(0, high)))
    schedules = (
        [{"cron": "0 0 * * *", "timezone": "UTC", "duration": "1d", "min": floor}]
        if floor is not None
        else []
    )
    return policy(
        min=low,
        max=high,
        checks=[CPU_CHECK, SESSIONS],
        schedules=schedules,
        scale_up={"rate": {"instances": draw(st.integers(1, 5)), "period": "1m"}},
        scale_down={"stabilization": "0s"},
    )


@settings(max_examples=300, deadline=None)
@given(
    group=group_policies(),
    ready=st.integers(0, 40),
    booting=st.integers(0, 3),
    cpu=inputs_strategy,
    sessions=inputs_strategy,
    forecast=st.one_of(st.none(), st.integers(0, 50)),
)
def test_result_stays_within_bounds_and_schedule_floor(
    group: Any,
    ready: int,
    booting: int,
    cpu: model.CheckInput,
    sessions: model.CheckInput,
    forecast: int | None,
) -> None:
    decision, _ = decide.evaluate(
        group,
        fleet(ready, booting),
        {"cpu": cpu, "sessions": sessions},
        model.GroupMemory(),
        NOW,
        forecast=forecast,
    )
    assert group.min <= decision.desired <= group.max
    for window in group.schedules:
        assert decision.desired >= (window.min or 0)


@settings(max_examples=300, deadline=None)
@given(
    ready=st.integers(1, 30),
    cpu=inputs_strategy,
    sessions=inputs_strategy,
)
def test_never_scale_in_while_a_check_is_not_fresh(
    ready: int, cpu: model.CheckInput, sessions: model.CheckInput
) -> None:
    group = policy(min=0, max=40, checks=[CPU_CHECK, SESSIONS], scale_down={"stabilization": "0s"})
    decision, _ = decide.evaluate(
        group, fleet(ready), {"cpu": cpu, "sessions": sessions}, model.GroupMemory(), NOW
    )
    kinds = {c.kind for c in decision.checks}
    if kinds != {"fresh"}:
        assert decision.desired >= ready


@settings(max_examples=150, deadline=None)
@given(
    loads=st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=5, max_size=60),
    up_window=st.sampled_from([0, 60, 120]),
    down_window=st.sampled_from([60, 300, 600]),
)
def test_stabilization_windows_bound_direction_changes(
    loads: list[float], up_window: int, down_window: int
) -> None:
    group = policy(
        min=1,
        max=40,
        scale_up={"stabilization": f"{up_window}s"},
        scale_down={"stabilization": f"{down_window}s"},
    )
    size, memory, moves = 4, model.GroupMemory(), []
    for step, load in enumerate(loads):
        now = NOW + 15 * step
        inputs = {"cpu": model.Fresh((model.Sample(load, now),))}
        decision, memory = decide.evaluate(group, fleet(size, created_at=NOW - 3600), inputs, memory, now)
        if decision.desired != size:
            moves.append((now, decision.direction))
            memory = memory.record_change(now, decision.desired - size)
            size = decision.desired
    for (t1, d1), (t2, d2) in itertools.pairwise(moves):
        if d1 is model.Direction.UP and d2 is model.Direction.DOWN:
            assert t2 - t1 >= down_window
        if d1 is model.Direction.DOWN and d2 is model.Direction.UP:
            assert t2 - t1 > up_window or up_window == 0


@settings(max_examples=200, deadline=None)
@given(ready=st.integers(0, 30), failed=st.integers(0, 3), load=st.floats(0, 3))
def test_victims_match_the_reduction(ready: int, failed: int, load: float) -> None:
    group = policy(min=0, max=40, scale_down={"stabilization": "0s"})
    inventory = fleet(ready, failed=failed, created_at=NOW - 3600)
    inputs = {"cpu": model.Fresh((model.Sample(load, NOW),))}
    decision, _ = decide.evaluate(group, inventory, inputs, model.GroupMemory(), NOW)
    assert len(decision.victims) == max(inventory.current - decision.desired, 0)
    assert len(set(decision.victims)) == len(decision.victims)


@settings(max_examples=150, deadline=None)
@given(
    loads=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=5, max_size=80),
    budget=st.integers(1, 12),
)
def test_churn_budget_bounds_changes_in_every_period(loads: list[float], budget: int) -> None:
    group = policy(min=0, max=40, churn_budget={"max_changes": budget, "period": "10m"}, scale_down={})
    size, memory, changes = 4, model.GroupMemory(), []
    for step, load in enumerate(loads):
        now = NOW + 30 * step
        inputs = {"cpu": model.Fresh((model.Sample(load, now),))}
        decision, memory = decide.evaluate(group, fleet(size, created_at=NOW - 3600), inputs, memory, now)
        if decision.desired != size:
            changes.append((now, abs(decision.desired - size)))
            memory = memory.record_change(now, decision.desired - size)
            size = decision.desired
    for start, _ in changes:
        assert sum(moved for at, moved in changes if start <= at < start + 600) <= budget
