"""Predictive scaling as pure arithmetic: history in, the load one lead time ahead out.

No I/O and no clock: the daemon passes the samples of a Prometheus range query and its `now`; the
simulator passes the trace's past.  The default model is the near-term forecast (see `nearterm`):
the newest load grown as it grew at this time of day on comparable days, chosen over the seasonal
profile (`seasonal`) by replays of the shared traces (`autoscaler simulate`).  `shadow` scores forecasts
against what really came, for forecast-only mode.

Typical use from the daemon, once per tick:

    predictive = policy.predictive
    load = forecast.predict(samples, now=now, lead=lead, span=interval,
                            timezone=predictive.timezone, params=forecast.params_for(predictive))
    floor = None if load is None else forecast.instances(load, per_instance, headroom)
    decision, memory = decide.evaluate(..., forecast=floor)     # active mode only
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import tzinfo
from zoneinfo import ZoneInfo

from autoscaler import model
from autoscaler.forecast import grid, nearterm, seasonal, shadow
from autoscaler.policy import spec

_EPSILON = 1e-9
Params = nearterm.Params | seasonal.Params
"""Either model's parameters."""


def params_for(predictive: spec.Predictive) -> nearterm.Params:
    """The near-term model as the policy's predictive section tunes it."""
    return nearterm.Params(
        quantile=predictive.quantile,
        recent=predictive.recent,
        days=predictive.days,
        window=predictive.slack,
        hold_after_peak=predictive.hold_after_peak,
    )


def calibration_for(predictive: spec.Predictive) -> shadow.Calibration | None:
    """The online calibration the policy asks for, if any."""
    return None if predictive.miss_rate is None else shadow.Calibration(predictive.miss_rate)


def _zone(timezone: str | tzinfo | None, utc_offset: float) -> nearterm.Zone:
    if timezone is None:
        return float(utc_offset)
    return ZoneInfo(timezone) if isinstance(timezone, str) else timezone


def predict(
    history: Sequence[model.Sample],
    *,
    now: float,
    lead: float,
    span: float = 0.0,
    step: float = 60.0,
    timezone: str | tzinfo | None = None,
    utc_offset: float = 0.0,
    params: Params = nearterm.DEFAULT,
) -> float | None:
    """The highest load expected in [now + lead, now + lead + span], or None without recent history.

    Local time (for time-of-day and weekday) follows `timezone` (an IANA name or tzinfo, DST
    included) when given, else the fixed `utc_offset` seconds.  Only samples up to `now` are used,
    and the newest of them is "now" for the model: a cached history makes the horizon longer,
    never the forecast optimistic.
    """
    usable = [s for s in history if s.timestamp <= now]
    series = grid.regrid(usable, step)
    if series is None:
        return None
    known = min(now, max(s.timestamp for s in usable))
    start, end = now + lead, now + lead + span
    zone = _zone(timezone, utc_offset)
    if isinstance(params, nearterm.Params):
        return nearterm.peak(series, known, start, end, params=params, zone=zone)
    return seasonal.peak(series, known, start, end, params=params, utc_offset=nearterm.offset_at(zone, start))


def lead(configured: float | None, measured: float | None, warmup: float, interval: float) -> float:
    """How far ahead the floor must look: the policy's own lead, else the measured clone-to-ready p90.

    A clone asked for now serves after its clone-to-ready time, so that (measured: the p90 of
    recent clones, as the target records it) is the horizon; only before the first measured clone
    does the guess warm-up plus one evaluation interval stand in.  A lead longer than needed holds
    capacity for a peak that has not come yet; one shorter than needed misses the ramp.
    """
    if configured is not None:
        return configured
    return measured if measured is not None else warmup + interval


def instances(load: float, per_instance: float, headroom: float = 0.0) -> int:
    """Instances that carry `load` at `per_instance` each, plus a `headroom` fraction."""
    return max(0, math.ceil(load * (1.0 + headroom) / per_instance - _EPSILON))
