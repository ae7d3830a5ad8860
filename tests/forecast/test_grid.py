"""No look-ahead: a forecast made at `known` sees only samples stamped at or before `known`.

Traces whose timestamps are not multiples of the step put a row inside a grid cell that starts
before it; the cell must not count as known until its newest sample is.
"""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.forecast import grid, nearterm, seasonal

STEP = 300.0
MONDAY = 1704060000.0  # 2024-01-01 00:00 at UTC+02:00
SHIFT = 150.0
"""Rows stamped half a step after each cell start."""


def _shifted_trace() -> tuple[grid.FloatArray, grid.FloatArray]:
    times = MONDAY + SHIFT + np.arange(0, 6 * 86400, STEP)
    values = np.random.default_rng(7).lognormal(3.0, 0.8, len(times))
    return times, values


def _forecast(model: str, series: grid.Grid, known: float) -> float | None:
    start, end = known + 420.0, known + 480.0
    if model == "nearterm":
        return nearterm.peak(series, known, start, end, zone=7200.0)
    return seasonal.peak(series, known, start, end, params=seasonal.PROFILE, utc_offset=7200.0)


@pytest.mark.parametrize("model", ["nearterm", "profile"])
@pytest.mark.parametrize("into_cell", [0.0, 60.0, SHIFT - 1.0, SHIFT, SHIFT + 1.0, STEP - 1.0])
def test_a_forecast_from_the_full_trace_equals_one_from_the_trace_cut_at_known(
    model: str, into_cell: float
) -> None:
    times, values = _shifted_trace()
    full = grid.from_arrays(times, values, STEP)
    for day in (3, 4, 5):
        known = MONDAY + day * 86400 + 9 * 3600 + into_cell
        kept = times <= known
        cut = grid.from_arrays(times[kept], values[kept], STEP)
        assert _forecast(model, full, known) == _forecast(model, cut, known)


def test_last_known_leaves_out_a_cell_with_a_newer_sample() -> None:
    series = grid.from_arrays([150.0, 450.0, 750.0], [1.0, 2.0, 3.0], STEP)
    assert [series.last_known(t) for t in (100.0, 150.0, 449.0, 450.0, 10_000.0)] == [-1, 0, 0, 1, 2]
