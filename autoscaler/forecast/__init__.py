"""Predictive scaling as pure arithmetic: history in, the load one lead time ahead out.

No I/O and no clock: the daemon passes the samples of a Prometheus range query and its `now`; the
simulator passes the trace's past.  The model is a seasonal profile (see `seasonal`), chosen over
a seasonal-naive model by the figures in bench/decision_quality.py.  `shadow` scores forecasts
against what really came, for forecast-only mode.

Typical use from the daemon, once per tick:

    load = forecast.predict(samples, now=now, lead=lead, span=interval, utc_offset=offset)
    floor = None if load is None else forecast.instances(load, per_instance, headroom)
    decision, memory = decide.evaluate(..., forecast=floor)     # active mode only
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from autoscaler import model
from autoscaler.forecast import grid, seasonal

_EPSILON = 1e-9


def predict(
    history: Sequence[model.Sample],
    *,
    now: float,
    lead: float,
    span: float = 0.0,
    step: float = 60.0,
    utc_offset: float = 0.0,
    params: seasonal.Params = seasonal.PROFILE,
) -> float | None:
    """The highest load expected in [now + lead, now + lead + span], or None without enough history."""
    series = grid.regrid(history, step)
    if series is None:
        return None
    return seasonal.peak(series, now, now + lead, now + lead + span, params=params, utc_offset=utc_offset)


def instances(load: float, per_instance: float, headroom: float = 0.0) -> int:
    """Instances that carry `load` at `per_instance` each, plus a `headroom` fraction."""
    return max(0, math.ceil(load * (1.0 + headroom) / per_instance - _EPSILON))
