"""The near-term forecast: grows the newest load as comparable days grew, caps noise, follows DST."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pytest

from autoscaler import forecast, model
from autoscaler.forecast import grid, nearterm
from autoscaler.policy import spec

STEP = 60.0
DAY = 86400.0
OFFSET = 7200.0
MONDAY = 1704060000.0  # 2024-01-01 00:00 at UTC+02:00


def _step_day(days: int, low: float = 7.0, high: float = 70.0) -> grid.Grid:
    """`low`, and `high` from 08:00 to 12:00 local, every day."""
    times = MONDAY + np.arange(0, days * DAY, STEP)
    hours = ((times + OFFSET) % DAY) / 3600
    values = np.where((hours >= 8) & (hours < 12), high, low)
    return grid.from_arrays(times, values, STEP)


def test_a_daily_step_is_forecast_one_lead_ahead() -> None:
    series = _step_day(3)
    ramp = MONDAY + 2 * DAY + 8 * 3600
    assert nearterm.peak(series, ramp - 60, ramp, ramp + 60, zone=OFFSET) == pytest.approx(70.0)


def test_after_the_peak_the_forecast_falls_with_the_load() -> None:
    series = _step_day(3)
    after = MONDAY + 2 * DAY + 12 * 3600 + 600  # ten minutes after the plateau ended
    assert nearterm.peak(series, after - 60, after, after + 60, zone=OFFSET) == pytest.approx(7.0)


def test_the_newest_load_is_the_floor_when_no_past_day_grew() -> None:
    series = _step_day(3)
    noon = MONDAY + 2 * DAY + 10 * 3600  # mid-plateau: nothing grows, the base holds
    assert nearterm.peak(series, noon - 60, noon, noon + 60, zone=OFFSET) == pytest.approx(70.0)


def test_without_past_days_the_forecast_is_the_recent_peak() -> None:
    series = grid.from_arrays([MONDAY, MONDAY + 60, MONDAY + 120], [5.0, 9.0, 6.0], STEP)
    assert nearterm.peak(series, MONDAY + 120, MONDAY + 180, MONDAY + 240) == pytest.approx(9.0)


def test_a_noisy_spike_is_capped_by_the_level_of_past_days() -> None:
    rng = np.random.default_rng(3)
    times = MONDAY + np.arange(0, 14 * DAY, 300.0)
    values = rng.lognormal(np.log(100.0), 0.3, times.size)
    series = grid.from_arrays(times, values, 300.0)
    now = times[-1]
    level = float(np.quantile(values, 0.9))
    got = nearterm.peak(series, now, now + 60, now + 90, zone=OFFSET)
    assert got is not None
    assert got <= max(level * 1.3, float(np.nanmax(values[-1:])))  # never base x growth x noise


def test_the_future_is_never_read() -> None:
    series = _step_day(3)
    ramp = MONDAY + 2 * DAY + 8 * 3600
    cut = grid.Grid(series.start, STEP, series.values.copy())
    cut.values[series.index(ramp) :] = 1e6
    assert nearterm.peak(cut, ramp - 60, ramp, ramp + 60, zone=OFFSET) == pytest.approx(70.0)


def test_no_recent_data_means_no_forecast() -> None:
    series = grid.from_arrays([MONDAY, MONDAY + 7200], [5.0, 6.0], STEP)
    assert nearterm.peak(series, MONDAY + 3600, MONDAY + 3660, MONDAY + 3720) is None


def test_lags_keep_the_local_clock_time_across_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    monday_after = 1711951200.0  # 2024-04-01 08:00 CEST; the clocks went forward on 31 March
    friday_before = 1711695600.0  # 2024-03-29 08:00 CET, 23 hours of wall clock plus three days earlier
    tuesday = 1711436400.0  # 2024-03-26 08:00 CET
    assert monday_after - nearterm.day_lags(monday_after, nearterm.DEFAULT, berlin)[0] == friday_before
    assert nearterm.day_lags(tuesday, nearterm.DEFAULT, berlin)[0] == DAY  # Monday 25th, same offset


def test_predict_takes_a_time_zone_and_the_policy_knobs() -> None:
    series = _step_day(3)
    samples = [model.Sample(float(v), series.start + i * STEP) for i, v in enumerate(series.values)]
    ramp = MONDAY + 2 * DAY + 8 * 3600
    history = [s for s in samples if s.timestamp <= ramp - 60]
    params = forecast.params_for(spec.Predictive(timezone="Europe/Berlin", quantile=0.95, days=5))
    assert (params.quantile, params.days) == (0.95, 5)
    by_zone = forecast.predict(history, now=ramp - 60, lead=60.0, span=60.0, timezone="Etc/GMT-2")
    fixed = forecast.predict(history, now=ramp - 60, lead=60.0, span=60.0, utc_offset=OFFSET, params=params)
    assert by_zone == pytest.approx(70.0)
    assert fixed == pytest.approx(70.0)


def test_an_unknown_time_zone_is_refused_by_the_policy() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        spec.Predictive(timezone="Mars/Olympus")


def test_predict_uses_only_samples_up_to_now() -> None:
    history = [model.Sample(5.0, MONDAY), model.Sample(500.0, MONDAY + 120)]
    assert forecast.predict(history, now=MONDAY + 60, lead=60.0) == pytest.approx(5.0)
