"""Standard five-field cron translated into APScheduler's terms, because the two disagree.

APScheduler 3.x numbers weekdays 0=Monday (cron: 0 and 7 are Sunday), ANDs a restricted day of
month with a restricted weekday (cron fires when either matches) and accepts its own tokens such
as 'last fri'. Here each field is expanded to the values cron means and handed over as explicit
lists, and a spec restricting both day fields becomes two triggers that fire when either fires.
Only standard syntax passes: numbers, names (months, weekdays), '*', ranges 'a-b', steps '*/n' and
'a-b/n', and comma lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONDAY_FIRST = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ITEM = re.compile(
    r"^(?:(?P<all>\*)|(?P<first>[a-z0-9]+)(?:-(?P<last>[a-z0-9]+))?)(?:/(?P<step>[0-9]+))?$", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class _Field:
    """One cron field: its name in messages, its value range and the names it accepts."""

    label: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}),
    _Field("month", 1, 12, {name: number for number, name in enumerate(_MONTHS, start=1)}),
    _Field("weekday", 0, 7, {name: number for number, name in enumerate(_WEEKDAYS)}),
)


def compile_cron(cron: str, timezone: ZoneInfo) -> BaseTrigger:
    """The APScheduler trigger that fires when standard cron would; ValueError names the bad field."""
    texts = cron.split()
    if len(texts) != len(_FIELDS):
        raise ValueError(f"expected five cron fields (minute hour day month weekday), got {len(texts)}")
    minute, hour, days, month, weekdays = (_expand(f, text) for f, text in zip(_FIELDS, texts, strict=True))
    common = {"minute": _runs(minute, str), "hour": _runs(hour, str), "month": _runs(month, str)}
    day = _runs(days, str)
    # APScheduler counts weekdays from Monday = 0; cron from Sunday = 0 (and 7).
    day_of_week = _runs({(value - 1) % 7 for value in weekdays}, _MONDAY_FIRST.__getitem__)
    # As cron does: a field written starting with '*' does not restrict the day.
    if texts[2].startswith("*") or texts[4].startswith("*"):
        return CronTrigger(day=day, day_of_week=day_of_week, timezone=timezone, **common)
    return OrTrigger(
        [
            CronTrigger(day=day, timezone=timezone, **common),
            CronTrigger(day_of_week=day_of_week, timezone=timezone, **common),
        ]
    )


def fixed_time(cron: str) -> bool:
    """Whether the minute and hour fields are fixed (neither starts with '*').

    As in cron, such a job fires once when daylight saving repeats an hour; one with a
    wildcard minute or hour fires on both passes, following the wall clock.
    """
    minute, hour = [*cron.split(), "*", "*"][:2]
    return not (minute.startswith("*") or hour.startswith("*"))


def _expand(field: _Field, text: str) -> set[int]:
    """The values a cron field selects, as cron means them."""
    values: set[int] = set()
    for item in text.split(","):
        values.update(_item_values(field, item))
    return values


def _runs(values: set[int], show: Callable[[int], str]) -> str:
    """An explicit APScheduler list, consecutive values written as one range: '1-5,10'."""
    parts: list[str] = []
    ordered = sorted(values)
    start = ordered[0]
    for previous, value in zip(ordered, [*ordered[1:], None], strict=True):
        if value != previous + 1:
            parts.append(show(start) if start == previous else f"{show(start)}-{show(previous)}")
            start = value if value is not None else start
    return ",".join(parts)


def _item_values(field: _Field, item: str) -> range:
    match = _ITEM.match(item)
    if match is None or (match["step"] is not None and not match["all"] and match["last"] is None):
        raise ValueError(
            f"{field.label} field: {item!r} is not standard cron "
            "(use numbers, names, *, ranges a-b, steps */n or a-b/n, and comma lists)"
        )
    step = int(match["step"] or 1)
    if step == 0:
        raise ValueError(f"{field.label} field: step 0 in {item!r}")
    if match["all"]:
        return range(field.low, field.high + 1, step)
    first = _value(field, match["first"], item)
    last = first if match["last"] is None else _value(field, match["last"], item, after=first)
    if last < first:
        raise ValueError(f"{field.label} field: range {item!r} runs backwards")
    return range(first, last + 1, step)


def _value(field: _Field, word: str, item: str, after: int | None = None) -> int:
    """The number a word stands for; `after` is the start of the range the word closes."""
    name = word.lower()
    if name in field.names:
        # 'fri-sun' means Friday to Sunday: Sunday closing a range that starts later is day 7.
        return 7 if name == "sun" and after is not None and after > 0 else field.names[name]
    if not word.isdigit():
        raise ValueError(f"{field.label} field: {word!r} is not a number or a known name")
    number = int(word)
    if not field.low <= number <= field.high:
        raise ValueError(f"{field.label} field: {number} in {item!r} is outside {field.low}-{field.high}")
    return number
