"""A forecast floor that holds no more than it must: a ramp only within its slack, a peak not once passed."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler import forecast
from autoscaler.forecast import grid, nearterm
from autoscaler.policy import files, spec

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


def _ramp_at_eight(days: int) -> grid.Grid:
    """7, and 70 from 08:00 to 08:20 local, every day."""
    times = MONDAY + np.arange(0, days * DAY, STEP)
    minute = ((times + OFFSET) % DAY) // 60
    return grid.from_arrays(times, np.where((minute >= 480) & (minute < 500), 70.0, 7.0), STEP)


@pytest.mark.parametrize(
    ("minutes_before_eight", "slack", "expected"),
    [
        # The ramp one lead time ahead is held whatever the slack.
        (2, 600.0, 70.0),
        (2, 60.0, 70.0),
        # Six minutes ahead: within a 10-minute slack (today's ramp may come early), not a 5-minute one.
        (6, 600.0, 70.0),
        (6, 300.0, 7.0),
        (4, 300.0, 70.0),
        (10, 600.0, 7.0),
    ],
)
def test_a_ramp_is_held_only_within_the_slack(
    minutes_before_eight: int, slack: float, expected: float
) -> None:
    known = MONDAY + 3 * DAY + 8 * 3600 - 60 * minutes_before_eight
    params = nearterm.Params(window=slack)
    got = nearterm.peak(_ramp_at_eight(4), known, known + LEAD, known + LEAD + 15, params=params, zone=OFFSET)
    assert got == pytest.approx(expected)


def test_the_policy_options_reach_the_model() -> None:
    predictive = spec.Predictive.model_validate({"hold_after_peak": "2m", "slack": "5m"})
    assert (forecast.params_for(predictive).hold_after_peak, forecast.params_for(predictive).window) == (
        120,
        300,
    )
    defaults = forecast.params_for(spec.Predictive())
    assert (defaults.hold_after_peak, defaults.window) == (None, 600.0)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"slack": "0s"}, "predictive.slack"),
        ({"hold_after_peak": "-1m"}, "predictive.hold_after_peak"),
    ],
)
def test_bad_values_are_located(option: dict[str, str], message: str) -> None:
    text = "group: web\ngolden: g.qcow2\ntemplate: t\nmin: 1\nmax: 4\npredictive:\n"
    text += "".join(f"  {key}: {value}\n" for key, value in option.items())
    _, problems = files.load_text(text, "web.yaml")
    assert [p.path for p in problems] == [message]
    assert str(problems[0]).startswith("web.yaml:7:")
