"""The per-group history behind the console's charts: totals by strategy, aligned forecasts, bounds."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler import model
from autoscaler.engine import history
from tests import fakes
from tests.engine.conftest import World, make_policy

T0 = 1_800_000_000.0


def decision(at: float, value: float | None, desired: int = 2, check: str = "load") -> model.Decision:
    report = model.CheckReport(check, "fresh" if value is not None else "missing", value, desired, "")
    return model.Decision("web", at, 2, desired, (report,), (), "hold")


def inventory(ready: int, booting: int = 0, at: float = T0) -> model.GroupInventory:
    members = [
        model.Instance(f"r{i}", f"u{i}", model.InstanceState.READY, at - 30, at - 10) for i in range(ready)
    ]
    members += [model.Instance(f"b{i}", f"v{i}", model.InstanceState.BOOTING, at - 5) for i in range(booting)]
    return model.GroupInventory("web", tuple(members))


def tracking(target: float) -> Any:
    strategy = {"kind": "target_tracking", "target": target, "tolerance": 0.1}
    return make_policy(checks=[{"name": "cpu", "source": "fake", "query": "cpu", "strategy": strategy}])


def test_per_instance_load_is_the_total_and_capacity_is_ready_times_share() -> None:
    book = history.History()
    point = book.record(decision(T0, 95.0), inventory(ready=3, booting=1), make_policy())
    assert (point.current, point.ready, point.desired) == (4, 3, 2)
    assert (point.load, point.capacity) == (95.0, 30.0)


def test_target_tracking_value_is_an_average_over_ready_members() -> None:
    book = history.History()
    point = book.record(decision(T0, 0.9, check="cpu"), inventory(ready=4), tracking(0.6))
    assert point.load == pytest.approx(3.6)
    assert point.capacity == pytest.approx(2.4)
    empty = book.record(decision(T0 + 1, 0.9, check="cpu"), inventory(ready=0), tracking(0.6))
    assert (empty.load, empty.capacity) == (None, 0.0)


def test_missing_or_nan_values_leave_a_gap() -> None:
    book = history.History()
    assert book.record(decision(T0, None), inventory(2), make_policy()).load is None
    assert book.record(decision(T0 + 1, float("nan")), inventory(2), make_policy()).load is None


def test_a_forecast_is_shown_at_the_instant_it_was_made_for() -> None:
    book = history.History()
    book.record(decision(T0, 10.0), inventory(1), make_policy(), forecast=(T0 + 30, 55.0))
    book.record(decision(T0 + 15, 12.0), inventory(1), make_policy(), forecast=(T0 + 45, 60.0))
    due = book.record(decision(T0 + 30, 14.0), inventory(1), make_policy())
    later = book.record(decision(T0 + 50, 14.0), inventory(1), make_policy())
    assert [p.forecast for p in book.points] == [None, None, 55.0, 60.0]
    assert (due.forecast, later.forecast) == (55.0, 60.0)


def test_points_are_bounded_by_count_and_age() -> None:
    book = history.History(max_points=5, max_age=100.0)
    for tick in range(8):
        book.record(decision(T0 + tick, 1.0), inventory(1), make_policy())
    assert [p.at for p in book.points] == [T0 + t for t in range(3, 8)]
    book.record(decision(T0 + 1000, 1.0), inventory(1), make_policy())
    assert [p.at for p in book.points] == [T0 + 1000]


def test_clone_to_ready_is_measured_once_per_member() -> None:
    book = history.History()
    book.record(decision(T0, 1.0), inventory(ready=2, booting=1), make_policy())
    book.record(decision(T0 + 1, 1.0), inventory(ready=2, booting=1), make_policy())
    assert [(t.name, t.seconds) for t in book.ready_times] == [("r0", 20.0), ("r1", 20.0)]
    summary = book.to_dict()["clone_to_ready"]
    assert (summary["count"], summary["median"], summary["max"]) == (2, 20.0, 20.0)


def test_ready_summary_percentiles() -> None:
    times = [history.ReadyTime(f"m{i}", T0 + i, float(i)) for i in range(1, 11)]
    summary = history.ready_summary(times)
    assert (summary["median"], summary["p90"], summary["max"]) == (5.5, 9.0, 10.0)
    assert summary["recent"][0]["name"] == "m10"
    assert history.ready_summary([])["median"] is None


def test_to_dict_is_columnar_and_since_keeps_newer_points() -> None:
    book = history.History()
    for tick in range(3):
        book.record(decision(T0 + tick, 5.0 + tick), inventory(1), make_policy())
    data = book.to_dict(since=T0)
    assert data["points"]["at"] == [T0 + 1, T0 + 2]
    assert data["points"]["load"] == [6.0, 7.0]
    assert data["basis"] == {"check": "load", "kind": "per_instance", "per_member": 10.0}


async def test_each_tick_of_the_handler_feeds_its_history(world: World) -> None:
    world.target.add("web", 2)
    world.load(35.0)
    web = world.handler()
    await web.tick()
    world.clock.advance(15)
    await web.tick()
    points = list(web.history.points)
    assert [p.at for p in points] == [fakes.EPOCH, fakes.EPOCH + 15]
    assert [p.load for p in points] == [35.0, 35.0]
    assert points[0].desired == 4
    assert points[-1].current == 4


def test_status_lists_the_schedule_windows_with_their_times() -> None:
    from autoscaler.engine import status

    windows = [
        {"name": "always", "cron": "* * * * *", "duration": "2m", "min": 3},
        {"cron": "0 3 * * *", "duration": "1h", "max": 2},
    ]
    shown = status.schedules(make_policy(schedules=windows), T0)
    assert [(w["name"], w["open"], w["min"], w["max"]) for w in shown] == [
        ("always", True, 3, None),
        ("schedules[1]", False, None, 2),
    ]
    assert shown[0]["closes_at"] is not None
    assert shown[1]["next_opening"] > T0
