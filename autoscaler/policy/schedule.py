"""Calendar windows as a pure calculation: is a cron-opened window open at a given instant?

APScheduler's CronTrigger does the cron and time-zone arithmetic (DST included), fed with the
standard cron meaning by `cron.compile_cron`; nothing here reads the clock, so the decision core
can ask with its own `now`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger

from autoscaler.policy import cron, spec


@dataclass(frozen=True, slots=True)
class Bounds:
    """The floor and ceiling that the open windows impose, with the names of those windows."""

    floor: int | None
    ceiling: int | None
    floor_by: str = ""
    ceiling_by: str = ""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError with a readable message when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')") from exc


@functools.lru_cache(maxsize=4096)
def trigger(spec_text: str, tz_name: str) -> BaseTrigger:
    """The trigger firing when standard cron `spec_text` would in a time zone; ValueError when malformed."""
    return cron.compile_cron(spec_text, zone(tz_name))


FAST_PATH_SPAN = timedelta(days=31)
"""Longest span over which equal UTC offsets at both ends are taken to mean no DST change between."""


def is_open(window: spec.Schedule, now: float) -> bool:
    """Whether the window's last opening at or before `now` was at most `duration` seconds ago."""
    instant = datetime.fromtimestamp(now, tz=UTC)
    fires = trigger(window.cron, window.timezone)
    length = timedelta(seconds=window.duration)
    if _no_offset_change(zone(window.timezone), instant - length - timedelta(days=1), instant):
        # Without a DST change the window is open when some opening lies within `duration`;
        # one lookup instead of a walk over every opening of the last day (minute crons).
        fire = fires.get_next_fire_time(None, instant - length)
        return fire is not None and fire.astimezone(UTC) <= instant
    opened = last_opening(fires, instant, window.duration, once=cron.fixed_time(window.cron))
    return opened is not None and instant - opened <= length


def _no_offset_change(tz: ZoneInfo, start: datetime, end: datetime) -> bool:
    """True when the zone's UTC offset is the same at both ends of a span short enough to trust it."""
    return (
        end - start <= FAST_PATH_SPAN and start.astimezone(tz).utcoffset() == end.astimezone(tz).utcoffset()
    )


def last_opening(
    fires: BaseTrigger, instant: datetime, duration: float, once: bool = True
) -> datetime | None:
    """The last fire time at or before `instant` (UTC), walked from a day before the window could open.

    Walking instead of searching from `instant - duration` keeps a window whole across DST: an
    opening moved out of a skipped hour is still found from inside its window, and, with `once`
    (a fixed-time cron), the second pass through a repeated hour opens nothing again.
    """
    cursor = instant - timedelta(days=1, seconds=duration)
    opened: datetime | None = None
    wall: datetime | None = None
    while (fire := fires.get_next_fire_time(None, cursor)) is not None:
        at = fire.astimezone(UTC)
        if at > instant or at < cursor:
            break
        if not once or wall is None or fire.replace(tzinfo=None) > wall:
            opened, wall = at, fire.replace(tzinfo=None)
        cursor = at + timedelta(microseconds=1)
    return opened


def bounds(windows: tuple[spec.Schedule, ...], now: float) -> Bounds:
    """The highest floor and lowest ceiling among the windows open at `now`."""
    floor: int | None = None
    ceiling: int | None = None
    floor_by = ceiling_by = ""
    for index, window in enumerate(windows):
        if not is_open(window, now):
            continue
        label = window.name or f"schedules[{index}]"
        if window.min is not None and (floor is None or window.min > floor):
            floor, floor_by = window.min, label
        if window.max is not None and (ceiling is None or window.max < ceiling):
            ceiling, ceiling_by = window.max, label
    return Bounds(floor, ceiling, floor_by, ceiling_by)


@dataclass(frozen=True, slots=True)
class WindowTimes:
    """Where a window stands at an instant, for people: open until when, or opening next when."""

    open: bool
    closes_at: float | None
    """When the open window closes (Unix seconds), None when closed."""
    next_opening: float | None
    """The next opening after the instant (Unix seconds), None when the cron never fires again."""


def times(window: spec.Schedule, now: float) -> WindowTimes:
    """Whether `window` is open at `now`, until when, and when it opens next."""
    instant = datetime.fromtimestamp(now, tz=UTC)
    fires = trigger(window.cron, window.timezone)
    following = fires.get_next_fire_time(None, instant + timedelta(microseconds=1))
    next_opening = following.timestamp() if following is not None else None
    if not is_open(window, now):
        return WindowTimes(False, None, next_opening)
    if cron.fixed_time(window.cron):  # a few openings a day: the DST-aware walk is cheap
        opened = last_opening(fires, instant, window.duration)
    else:  # a minute or hourly cron would walk over hundreds of openings: search instead
        opened = latest_fire(fires, instant - timedelta(seconds=window.duration), instant)
    closes = opened.timestamp() + window.duration if opened is not None else None
    return WindowTimes(True, closes, next_opening)


def latest_fire(fires: BaseTrigger, start: datetime, instant: datetime) -> datetime | None:
    """The last fire time in [start, instant] (UTC), by bisection: about 20 lookups for any cron."""
    first: datetime | None = fires.get_next_fire_time(None, start)
    if first is None or first > instant:
        return None
    best = low = first.astimezone(UTC)
    high = instant
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        fire: datetime | None = fires.get_next_fire_time(None, middle)
        if fire is not None and fire <= instant:
            best = low = fire.astimezone(UTC)
            if low >= middle:
                low += timedelta(microseconds=1)
        else:
            high = middle
    return best
