"""The seasonal profile recovers a synthetic daily and weekly pattern, and never peeks at the future."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler import forecast, model
from autoscaler.forecast import grid, seasonal, shadow

STEP = 300.0
MONDAY = 1704060000.0  # 2024-01-01 00:00 at UTC+02:00
OFFSET = 7200.0
DAY = 86400.0


def _office_load(t: float) -> float:
    """10 at night and at weekends, 50 on weekdays 08:00-17:00 local."""
    local = t + OFFSET
    weekday = int((local // DAY + 3) % 7)
    hour = (local % DAY) / 3600
    return 50.0 if weekday < 5 and 8 <= hour < 17 else 10.0


def _history(days: int) -> grid.Grid:
    times = MONDAY + np.arange(0, days * DAY, STEP)
    return grid.from_arrays(times, [_office_load(t) for t in times], STEP)


SERIES = _history(21)  # three weeks from Monday 2024-01-01


@pytest.mark.parametrize(
    ("params", "day", "hour", "expected"),
    [
        (seasonal.PROFILE, 14, 8.0, 50.0),  # Monday of week 3: the ramp, learned from Thu/Fri/Mon...
        (seasonal.PROFILE, 16, 12.0, 50.0),  # Wednesday midday
        (seasonal.PROFILE, 16, 3.0, 10.0),  # Wednesday night
        (seasonal.PROFILE, 19, 9.0, 10.0),  # Saturday morning: weekend days only
        (seasonal.NAIVE_WEEK, 14, 8.0, 50.0),
        (seasonal.NAIVE_WEEK, 19, 9.0, 10.0),
    ],
)
def test_forecast_recovers_the_daily_and_weekly_pattern(
    params: seasonal.Params, day: int, hour: float, expected: float
) -> None:
    target = MONDAY + day * DAY + hour * 3600
    now = target - 120.0
    got = seasonal.peak(SERIES, now, target, target, params=params, utc_offset=OFFSET)
    assert got == pytest.approx(expected)


def test_the_future_is_never_read() -> None:
    now = MONDAY + 14 * DAY + 7.9 * 3600
    changed = grid.Grid(SERIES.start, SERIES.step, SERIES.values.copy())
    changed.values[SERIES.index(now) + 1 :] = 1e6
    before = seasonal.peak(SERIES, now, now + 600, now + 900, params=seasonal.PROFILE, utc_offset=OFFSET)
    after = seasonal.peak(changed, now, now + 600, now + 900, params=seasonal.PROFILE, utc_offset=OFFSET)
    assert before == after


def test_no_history_no_forecast() -> None:
    assert seasonal.peak(SERIES, MONDAY - 1, MONDAY, MONDAY, params=seasonal.PROFILE) is None
    assert forecast.predict([], now=MONDAY, lead=60) is None


def test_level_correction_follows_a_busier_day_within_its_clip() -> None:
    now = MONDAY + 16 * DAY + 12 * 3600
    busier = grid.Grid(SERIES.start, SERIES.step, SERIES.values.copy())
    busier.values[SERIES.index(now - 3600) : SERIES.index(now) + 1] *= 1.2
    got = seasonal.peak(busier, now, now + 120, now + 120, params=seasonal.PROFILE, utc_offset=OFFSET)
    assert got == pytest.approx(60.0)
    busier.values[SERIES.index(now - 3600) : SERIES.index(now) + 1] *= 10
    capped = seasonal.peak(busier, now, now + 120, now + 120, params=seasonal.PROFILE, utc_offset=OFFSET)
    assert capped == pytest.approx(50.0 * seasonal.PROFILE.level_clip[1])


def test_predict_from_range_query_samples() -> None:
    target = MONDAY + 14 * DAY + 8 * 3600
    samples = [
        model.Sample(_office_load(t), t) for t in np.arange(MONDAY, target - 120, 60.0) if int(t) % 7 != 0
    ]
    load = forecast.predict(samples, now=target - 120, lead=120, span=60, step=60, utc_offset=OFFSET)
    assert load == pytest.approx(50.0)
    assert forecast.instances(load or 0.0, per_instance=7.0) == 8
    assert forecast.instances(load or 0.0, per_instance=7.0, headroom=0.1) == 8
    assert forecast.instances(49.0, per_instance=7.0) == 7


def test_regrid_drops_nan_and_averages_a_cell() -> None:
    series = grid.regrid(
        [model.Sample(2.0, 10.0), model.Sample(4.0, 20.0), model.Sample(float("nan"), 70.0)], 60
    )
    assert series is not None
    assert series.values.tolist() == [3.0]


def test_shadow_book_scores_the_peak_of_each_span() -> None:
    book = shadow.Book().expect(100.0, 200.0, 10.0).expect(150.0, 250.0, 30.0)
    for at, actual in ((100.0, 8.0), (160.0, 12.0), (200.0, 9.0), (250.0, 20.0)):
        book = book.settle(at, actual)
    assert book.pending == ()
    assert book.last == 30.0
    assert book.score.count == 2
    assert book.score.abs_error == pytest.approx(2.0 + 10.0)  # |10-12| and |30-20|
    assert book.score.wape == pytest.approx(100 * 12 / 32)
    assert book.score.under_ratio == pytest.approx(50.0)
