"""The near-term forecast: the newest load, grown as much as it grew at this time of day on comparable days.

A floor that must be ready one lead time ahead has two jobs: follow the load a boot time ahead
(flash crowds, ramps), and release capacity as soon as the load falls.  This model does both
from one number per tick, the peak load expected over [start, end]:

    base   = the highest load over the last `recent` seconds that are known
    growth = q-quantile, over comparable past days and +-`window` around the same clock time, of
             (peak over the target span) / (base at the same lead) on that day
    level  = q-quantile of the peak over the target span on those days (the load itself)
    peak   = max(base, min(base x growth, level))

`growth` carries the daily ramps (a Monday 07:00 grows every week) and stays near 1 when the load
is flat; `level` caps it when the newest load is noisy (a 5-minute CPU series whose step-to-step
ratios are heavy-tailed would otherwise multiply a spike by a spike).  The quantile `q` is the
operator's trade: higher covers more surprises and costs more instance-hours.  Comparable days
are the same kind (Mon-Fri vs Sat-Sun) in local time, which may follow daylight saving time.

Why this over the seasonal profile (`seasonal`): the profile forecasts a peak from the past days'
peaks scaled by the last 30 minutes, so it holds capacity through the whole predicted peak and
is blind to a crowd the calendar does not know; `autoscaler simulate --forecast-model profile`
compares the two.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import numpy as np

from autoscaler.forecast import grid as grid_mod

DAY = 86400.0
Zone = tzinfo | float
"""Local time: a time zone (offset per instant, DST included) or fixed seconds east of UTC."""


@dataclass(frozen=True)
class Params:
    """How the near-term forecast is built."""

    name: str = "nearterm"
    """Shown in reports."""
    quantile: float = 0.9
    """Quantile of the past days' growth and level; higher is safer and dearer."""
    recent: float = 180.0
    """Seconds of the newest known load whose peak is the base."""
    window: float = 600.0
    """Seconds of slack either side of the same clock time on each past day."""
    days: int = 10
    """Past comparable days with data to learn from."""
    min_days: int = 2
    """With fewer usable past days the forecast is the base alone."""
    search_days: int = 35
    """How far back to look for comparable days."""
    hold_after_peak: float | None = None
    """Seconds a past day's peak is still held once its clock time has passed the newest known load
    today (None: the whole `window` behind too)."""


DEFAULT = Params()
"""Tuned on the first half of each shared trace (bench/decision_quality.py --window first-half)."""


def offset_at(zone: Zone, t: float) -> float:
    """Seconds east of UTC of local time at instant `t`."""
    if isinstance(zone, float | int):
        return float(zone)
    offset = datetime.fromtimestamp(t, UTC).astimezone(zone).utcoffset()
    return 0.0 if offset is None else offset.total_seconds()


def _weekend(t: float, offset: float) -> bool:
    return int(((t + offset) // DAY + 3) % 7) >= 5


@functools.lru_cache(maxsize=64)
def _fixed_lags(weekday: int, search_days: int) -> tuple[float, ...]:
    weekend = weekday >= 5
    return tuple(d * DAY for d in range(1, search_days + 1) if (((weekday - d) % 7) >= 5) == weekend)


def day_lags(start: float, params: Params, zone: Zone) -> tuple[float, ...]:
    """Seconds back to the same local clock time on comparable days, nearest first."""
    offset = offset_at(zone, start)
    if isinstance(zone, float | int):
        return _fixed_lags(int(((start + offset) // DAY + 3) % 7), params.search_days)
    weekend = _weekend(start, offset)
    lags: list[float] = []
    for d in range(1, params.search_days + 1):
        past = start - d * DAY
        lag = d * DAY - offset + offset_at(zone, past)  # same wall-clock time across a DST change
        if _weekend(start - lag, offset_at(zone, start - lag)) == weekend:
            lags.append(lag)
    return tuple(lags)


def _peaks(
    values: grid_mod.FloatArray, first: int, last: int, back: np.ndarray, limit: int
) -> grid_mod.FloatArray:
    """Peak of cells [first, last] shifted `back` cells into the past (NaN where nothing is known)."""
    cells = np.arange(first, last + 1)[None, None, :] - back[:, :, None]
    known = (cells >= 0) & (cells <= limit)
    gathered = np.where(known, values[np.clip(cells, 0, limit)], np.nan)
    peaks: grid_mod.FloatArray = np.fmax.reduce(gathered, axis=-1)
    return peaks


def _quantile(values: grid_mod.FloatArray, q: float) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.quantile(finite, q)) if finite.size else None


def peak(
    series: grid_mod.Grid,
    known: float,
    start: float,
    end: float,
    *,
    params: Params = DEFAULT,
    zone: Zone = 0.0,
) -> float | None:
    """The peak load expected over [start, end] from cells up to `known`; None without recent data."""
    limit = series.last_known(known)
    if limit < 0:
        return None
    recent_first = max(series.index(known - params.recent), 0)
    window = series.values[recent_first : limit + 1]
    if not np.isfinite(window).any():
        return None
    base = float(np.nanmax(window))
    shifts = _shifts(series.step, start, known, params, zone)
    targets = _peaks(series.values, series.index(start), series.index(end), shifts, limit)
    usable = np.flatnonzero(np.isfinite(targets).any(axis=1))[: params.days]
    if usable.size < params.min_days:
        return base
    targets = targets[usable]
    bases = _peaks(series.values, recent_first, limit, shifts[usable], limit)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(bases > 0, targets / bases, np.nan)
    daily_growth = np.fmax.reduce(ratios, axis=1)  # a ramp a few minutes early or late still counts
    growth, level = _quantile(daily_growth, params.quantile), _quantile(targets, params.quantile)
    if growth is None or level is None:
        return base
    return max(base, min(base * growth, level))


def _shifts(step: float, start: float, known: float, params: Params, zone: Zone) -> np.ndarray:
    """Cells back to each comparable day (rows) at each slack offset (columns).

    An offset of +k cells reads a past day k cells earlier in its clock (today running late).
    With `hold_after_peak` set, only offsets whose clock time is not yet `hold_after_peak` behind
    the newest known load are kept: a peak that has passed today lets the floor go.
    """
    lags = np.round(np.asarray(day_lags(start, params, zone)) / step).astype(np.int64)
    ahead = behind = round(params.window / step)
    if params.hold_after_peak is not None:
        passed = math.floor((start - known + params.hold_after_peak) / step)
        behind = max(0, min(behind, passed))
    return lags[:, None] + np.arange(-ahead, behind + 1)[None, :]
