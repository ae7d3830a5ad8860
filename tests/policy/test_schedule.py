"""Calendar windows: time zones and daylight saving handled by the cron calculator, not by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.policy import cron as cron_module
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


def _opens_at_seven(cron_weekday: str, local_time: str) -> bool:
    window = spec.Schedule(cron=f"0 7 * * {cron_weekday}", timezone="Europe/Berlin", duration=3600, min=1)
    return schedule.is_open(window, at(local_time))


# 2026-11-23 is a Monday, 2026-11-28 a Saturday, 2026-11-29 a Sunday.
@pytest.mark.parametrize(
    ("weekday", "mon", "sat", "sun"),
    [
        ("1-5", True, False, False),
        ("mon-fri", True, False, False),
        ("0", False, False, True),
        ("7", False, False, True),
        ("sun", False, False, True),
        ("6,0", False, True, True),
        ("5-7", False, True, True),
        ("fri-sun", False, True, True),
        ("sun-sun", False, False, True),
        ("0-1", True, False, True),
        ("*/2", False, True, True),  # cron: 0,2,4,6 = sun, tue, thu, sat
        ("*", True, True, True),
    ],
)
def test_weekday_numbers_mean_what_cron_means(weekday: str, mon: bool, sat: bool, sun: bool) -> None:
    days = ("2026-11-23 07:30", "2026-11-28 07:30", "2026-11-29 07:30")
    assert [_opens_at_seven(weekday, day) for day in days] == [mon, sat, sun]


@pytest.mark.parametrize(
    ("cron", "local_time", "expected"),
    [
        ("0 7 1 * mon", "2026-12-01 07:30", True),  # the 1st, a Tuesday: day of month matches
        ("0 7 1 * mon", "2026-11-23 07:30", True),  # a Monday, not the 1st: weekday matches
        ("0 7 1 * mon", "2026-11-24 07:30", False),  # neither
        # A day of month written from '*' does not count as restricted: both must match.
        ("0 7 */2 * mon", "2026-11-23 07:30", True),  # odd day and a Monday
        ("0 7 */2 * mon", "2026-11-16 07:30", False),  # a Monday, even day
        ("0 7 */2 * mon", "2026-11-17 07:30", False),  # odd day, a Tuesday
        ("0 7 1-7 * *", "2026-11-05 07:30", True),
        ("0 7 1-7 * *", "2026-11-08 07:30", False),
    ],
)
def test_day_of_month_or_weekday_as_cron_does(cron: str, local_time: str, expected: bool) -> None:
    window = spec.Schedule(cron=cron, timezone="Europe/Berlin", duration=3600, min=1)
    assert schedule.is_open(window, at(local_time)) is expected


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 0 L * *", "day of month field: 'L' is not a number"),
        ("0 0 last * *", "day of month field: 'last' is not a number"),
        ("0 0 * * 5#3", "weekday field: '5#3' is not standard cron"),
        ("0 0 ? * *", "day of month field"),
        ("0 0 * * 8", "weekday field: 8 in '8' is outside 0-7"),
        ("0 0 5/2 * *", "'5/2' is not standard cron"),
        ("0 0 * * fri-mon", "runs backwards"),
        ("0 0 * * last fri", "five cron fields"),
        ("60 0 * * *", "minute field"),
        ("0 0 * * */0", "step 0"),
    ],
)
def test_non_standard_cron_is_refused(cron: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schedule.trigger(cron, "UTC")


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # 2026-03-29: 02:00-03:00 does not exist; the 02:30 opening moves to 03:30 CEST, for a whole hour.
        ("2026-03-29T03:15:00+02:00", False),
        ("2026-03-29T03:45:00+02:00", True),
        ("2026-03-29T04:15:00+02:00", True),
        ("2026-03-29T04:45:00+02:00", False),
        # 2026-10-25: 02:00-03:00 happens twice; the window opens at the first 02:30, once.
        ("2026-10-25T02:15:00+02:00", False),
        ("2026-10-25T02:45:00+02:00", True),
        ("2026-10-25T02:15:00+01:00", True),  # the repeated hour, 45 minutes after the opening
        ("2026-10-25T02:45:00+01:00", False),  # 75 minutes after: closed, not opened again
        ("2026-10-25T03:15:00+01:00", False),
        ("2026-10-26T02:45:00+01:00", True),
    ],
)
def test_daylight_saving_neither_shortens_nor_stretches_a_window(instant: str, expected: bool) -> None:
    window = spec.Schedule(cron="30 2 * * *", timezone="Europe/Berlin", duration=3600, min=1)
    assert schedule.is_open(window, datetime.fromisoformat(instant).timestamp()) is expected


@pytest.mark.parametrize(
    ("cron", "duration", "instant"),
    [
        ("0 * * * *", 3600, "2025-10-26T01:30:00+00:00"),  # 02:30 CET, the repeated hour's second pass
        ("*/15 * * * *", 900, "2025-10-26T01:20:00+00:00"),
    ],
)
def test_a_wildcard_hour_cron_fires_in_both_passes_of_a_repeated_hour(
    cron: str, duration: int, instant: str
) -> None:
    window = spec.Schedule(cron=cron, timezone="Europe/Berlin", duration=duration, min=1)
    assert schedule.is_open(window, datetime.fromisoformat(instant).timestamp())


def test_a_window_longer_than_the_repeat_stays_open_across_openings() -> None:
    window = spec.Schedule(cron="0 * * * *", timezone="UTC", duration=2 * 86400, min=1)
    assert schedule.is_open(window, datetime.fromisoformat("2026-10-25T01:59:59+00:00").timestamp())


@settings(max_examples=300, deadline=None)
@given(
    offset=st.integers(0, 366 * 86400),
    cron=st.sampled_from(["30 7 * * mon-fri", "*/7 * * * *", "0 2 * * *", "45 2 1,15 * *", "0 */3 * * sat"]),
    duration=st.sampled_from([60, 1800, 3600, 5400, 36000, 3 * 86400]),
)
def test_the_one_lookup_path_agrees_with_the_walk(offset: int, cron: str, duration: int) -> None:
    window = spec.Schedule(cron=cron, timezone="Europe/Berlin", duration=duration, min=1)
    now = at("2026-01-01 00:00") + offset
    instant = datetime.fromtimestamp(now, tz=UTC)
    opened = schedule.last_opening(
        schedule.trigger(cron, "Europe/Berlin"), instant, duration, once=cron_module.fixed_time(cron)
    )
    walked = opened is not None and instant - opened <= timedelta(seconds=duration)
    assert schedule.is_open(window, now) is walked


def test_times_of_an_open_window_say_when_it_closes_and_opens_next() -> None:
    found = schedule.times(OFFICE, at("2026-11-25 09:00"))  # Wednesday
    assert found.open
    assert found.closes_at == at("2026-11-25 17:30")
    assert found.next_opening == at("2026-11-26 07:30")


def test_times_of_a_closed_window_say_when_it_opens() -> None:
    found = schedule.times(OFFICE, at("2026-11-28 09:00"))  # Saturday
    assert not found.open
    assert found.closes_at is None
    assert found.next_opening == at("2026-11-30 07:30")


@pytest.mark.parametrize("cron_text", ["* * * * *", "*/7 * * * *", "0 * * * *", "15 */3 * * mon-fri"])
@pytest.mark.parametrize("minutes", [0, 1, 59, 61, 600, 1439])
def test_latest_fire_finds_what_the_walk_finds(cron_text: str, minutes: int) -> None:
    instant = datetime(2026, 11, 25, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes, seconds=17)
    fires = schedule.trigger(cron_text, "UTC")
    duration = 3 * 3600.0
    walked = schedule.last_opening(fires, instant, duration, once=False)
    found = schedule.latest_fire(fires, instant - timedelta(seconds=duration), instant)
    assert walked is not None
    assert found == walked


def test_times_of_a_minute_cron_close_a_duration_after_its_last_opening() -> None:
    every_minute = spec.Schedule(name="always", cron="* * * * *", duration=36000, min=2)
    found = schedule.times(every_minute, at("2026-11-25 09:00:30"))
    assert found.open
    assert found.closes_at == at("2026-11-25 09:00") + 36000
    assert found.next_opening == at("2026-11-25 09:01")
