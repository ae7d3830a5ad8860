"""A seasonal-profile forecast: what the same time of day did on recent comparable days, scaled to today.

For a target span [start, end] the model looks at the same clock span on the last `days` days of
the same kind (Mon-Fri vs Sat-Sun, or the same weekday), widened by `window` either side to absorb
a ramp that comes a little earlier or later; it takes each day's peak, then a quantile across
days, and multiplies by a level correction: how today's last `level_window` compares with the
same stretch on those days (clipped, so one spike cannot run away).  Daily and weekly seasonality
come from the choice of days; the level follows today's trend and size.

Why not Holt-Winters or another fitted model: the history is short (days to weeks), has gaps,
and the question is the peak one lead time ahead, not a mean; a fit per tick is
costly and its mean under-forecasts ramps.  The bench compares this profile with the seasonal-naive
model (the same weekday one week ago), which uses the same code with other parameters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from autoscaler.forecast import grid as grid_mod

DAY = 86400.0


@dataclass(frozen=True)
class Params:
    """How the seasonal profile is built."""

    name: str
    """Shown in reports."""
    match: Literal["day_kind", "weekday"]
    """Past days compared: same kind (weekday vs weekend) or same weekday."""
    days: int
    """How many past matching days with data to use."""
    quantile: float
    """Quantile across the days' peaks (1.0 = the highest)."""
    window: float
    """Seconds of slack either side of the target span, on each past day."""
    level_window: float
    """Seconds of recent history compared with the same stretch on past days; 0 disables it."""
    level_clip: tuple[float, float] = (0.8, 1.5)
    """Bounds of the level correction factor."""
    level_stat: Literal["mean", "max"] = "mean"
    """How a stretch is summarised for the level: its mean, or its peak (like the profile itself)."""
    min_days: int = 1
    """Fewer usable past days than this: no forecast."""
    search_days: int = 35
    """How far back to look for matching days."""


PROFILE = Params(
    "profile",
    "day_kind",
    days=5,
    quantile=0.5,
    window=300.0,
    level_window=1800.0,
    level_clip=(0.5, 3.0),
    level_stat="max",
)
"""The default, tuned on replays of the shared traces: the median of the last five same-kind days' peaks
within 5 min of the span, scaled by how today's last 30 min peak compares with theirs (x0.5 to x3)."""
NAIVE_WEEK = Params("naive_week", "weekday", days=1, quantile=1.0, window=0.0, level_window=0.0)
"""The seasonal-naive comparison: the same span one week ago."""


def weekday(t: float, utc_offset: float) -> int:
    """Monday = 0 ... Sunday = 6, in local time."""
    return int(((t + utc_offset) // DAY + 3) % 7)


def _matches(params: Params, target: int, past: int) -> bool:
    if params.match == "weekday":
        return past == target
    return (past < 5) == (target < 5)


@functools.lru_cache(maxsize=256)
def _lags_for(params: Params, target: int) -> tuple[float, ...]:
    days = range(1, params.search_days + 1)
    return tuple(d * DAY for d in days if _matches(params, target, (target - d) % 7))


def lags(start: float, params: Params, utc_offset: float) -> tuple[float, ...]:
    """Candidate offsets (seconds into the past) of comparable days, nearest first."""
    return _lags_for(params, weekday(start, utc_offset))


def _segment(series: grid_mod.Grid, begin: float, end: float, limit: int) -> grid_mod.FloatArray | None:
    lo, hi = max(series.index(begin), 0), min(series.index(end), limit)
    if hi < lo:
        return None
    segment = series.values[lo : hi + 1]
    return segment if bool(np.isfinite(segment).any()) else None


def _level(series: grid_mod.Grid, now: float, limit: int, used: list[float], params: Params) -> float:
    if params.level_window <= 0:
        return 1.0
    summary = np.nanmax if params.level_stat == "max" else np.nanmean
    recent = _segment(series, now - params.level_window, now, limit)
    past = [_segment(series, now - params.level_window - lag, now - lag, limit) for lag in used]
    levels = [float(summary(p)) for p in past if p is not None]
    if recent is None or not levels or np.median(levels) <= 0:
        return 1.0
    low, high = params.level_clip
    return float(np.clip(float(summary(recent)) / float(np.median(levels)), low, high))


def peak(
    series: grid_mod.Grid, now: float, start: float, end: float, *, params: Params, utc_offset: float = 0.0
) -> float | None:
    """The forecast peak load over [start, end] using only cells up to `now`; None without history."""
    limit = series.last_known(now)
    if limit < 0:
        return None
    peaks: list[float] = []
    used: list[float] = []
    for lag in lags(start, params, utc_offset):
        segment = _segment(series, start - lag - params.window, end - lag + params.window, limit)
        if segment is not None:
            peaks.append(float(np.nanmax(segment)))
            used.append(lag)
        if len(peaks) == params.days:
            break
    if len(peaks) < params.min_days:
        return None
    profile = float(np.quantile(peaks, params.quantile))
    return profile * _level(series, now, limit, used, params)
