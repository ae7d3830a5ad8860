"""A forecast floor that lets go once its predicted peak has passed (predictive.hold_after_peak)."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler import forecast
from autoscaler.forecast import grid, nearterm
from autoscaler.policy import spec

STEP = 60.0
DAY = 86400.0
OFFSET = 7200.0
MONDAY = 1704060000.0  # 2024-01-01 00:00 at UTC+02:00
LEAD = 90.0


def _spike_at_eight(days: int) -> grid.Grid:
    """7 all day, and 70 for the three minutes from 08:00 local, every day (today's spike included)."""
    times = MONDAY + np.arange(0, days * DAY, STEP)
    minute = ((times + OFFSET) % DAY) // 60
    return grid.from_arrays(times, np.where((minute >= 480) & (minute < 483), 70.0, 7.0), STEP)


@pytest.mark.parametrize(
    ("minutes_after_eight", "hold", "expected"),
    [
        # Before the spike: it lies ahead, every setting holds capacity for it.
        (-8, None, 70.0),
        (-8, 0.0, 70.0),
        # At 08:06, three minutes after today's spike came and went, the 10-minute slack (and a
        # hold of 10 or 6 minutes after the peak's clock time) still holds it ...
        (6, None, 70.0),
        (6, 600.0, 70.0),
        (6, 360.0, 70.0),
        # ... a floor that lets go once the peak has passed falls with the load.
        (6, 240.0, 7.0),
        (6, 0.0, 7.0),
        # Long after the spike nothing holds it.
        (11, None, 7.0),
    ],
)
def test_a_passed_peak_is_let_go(minutes_after_eight: int, hold: float | None, expected: float) -> None:
    series = _spike_at_eight(4)
    known = MONDAY + 3 * DAY + 8 * 3600 + 60 * minutes_after_eight
    params = nearterm.Params(hold_after_peak=hold)
    got = nearterm.peak(series, known, known + LEAD, known + LEAD + 15, params=params, zone=OFFSET)
    assert got == pytest.approx(expected)


def test_the_policy_option_reaches_the_model() -> None:
    predictive = spec.Predictive.model_validate({"hold_after_peak": "2m"})
    assert forecast.params_for(predictive).hold_after_peak == 120.0
    assert forecast.params_for(spec.Predictive()).hold_after_peak is None
