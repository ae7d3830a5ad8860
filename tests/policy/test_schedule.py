"""Calendar windows: time zones and daylight saving handled by the cron calculator, not by hand."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from autoscaler.policy import schedule, spec

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = spec.Schedule(
    name="office", cron="30 7 * * mon-fri", timezone="Europe/Berlin", duration=36000, min=8
)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


@pytest.mark.parametrize(
    ("local_time", "expected"),
    [
        ("2026-11-25 07:29", False),  # Wednesday, a minute early
        ("2026-11-25 07:30", True),
        ("2026-11-25 17:29", True),
        ("2026-11-25 17:31", False),
        ("2026-11-28 09:00", False),  # Saturday
        ("2026-03-30 07:45", True),  # Monday after the switch to summer time
        ("2026-10-26 07:45", True),  # Monday after the switch back
        ("2026-10-26 07:15", False),
    ],
)
def test_office_hours_window(local_time: str, expected: bool) -> None:
    assert schedule.is_open(OFFICE, at(local_time)) is expected


def test_bounds_take_highest_floor_and_lowest_ceiling() -> None:
    always = {"cron": "0 0 * * *", "timezone": "UTC", "duration": 86400.0}
    windows = (
        spec.Schedule(name="a", min=3, **always),
        spec.Schedule(name="b", min=5, max=9, **always),
        spec.Schedule(name="c", max=7, **always),
    )
    assert schedule.bounds(windows, at("2026-11-25 12:00")) == schedule.Bounds(5, 7, "b", "c")


def test_bad_cron_and_zone_are_value_errors() -> None:
    with pytest.raises(ValueError, match="five cron fields"):
        schedule.trigger("* * *", "UTC")
    with pytest.raises(ValueError, match="unknown time zone"):
        schedule.zone("Mars/Olympus")
