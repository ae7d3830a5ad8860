"""The elasticity figures on hand-made traces, with numbers worked out by hand."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from autoscaler.simulate import metrics
from tests.simulate import helpers

CAPACITY, TARGET = 10.0, 0.5  # demand = ceil(value / 5)


def test_demand_is_the_ceiling_of_load_over_target_capacity() -> None:
    values = np.array([0.0, 5.0, 5.000000001, 5.1, 10.0, 15.0])
    assert metrics.demand(values, CAPACITY, TARGET).tolist() == [0, 1, 1, 2, 2, 3]


def test_figures_match_the_hand_computation() -> None:
    trace = helpers.make_trace([5.0, 10.0, 15.0, 10.0])  # D = 1, 2, 3, 2 (sum 8)
    supply = np.array([1, 2, 1, 3])  # under 0,0,2,0; over 0,0,0,1
    alive = np.array([1.0, 2.0, 1.5, 3.0])
    got = metrics.figures(trace, supply, alive, CAPACITY, TARGET)
    assert got.theta_u == pytest.approx(100 * 2 / 8)
    assert got.theta_o == pytest.approx(100 * 1 / 8)
    assert got.tau_u == pytest.approx(25.0)
    assert got.tau_o == pytest.approx(25.0)
    # dD = +1, +1, -1 and dS = +1, -1, +2: opposite in 2 of 3 pairs
    assert got.instability == pytest.approx(100 * 2 / 3)
    assert got.instance_hours == pytest.approx(7.5 * 60 / 3600)
    # value > S x C only at row 2 (15 > 10): one one-minute step
    assert got.slo_violation_minutes == pytest.approx(1.0)


def test_pairs_across_a_gap_do_not_count_for_instability() -> None:
    trace = helpers.make_trace([5.0, 10.0, None, 5.0, 10.0])  # rows 0, 1, 3, 4
    supply = np.array([2, 1, 2, 1])
    got = metrics.figures(trace, supply, supply.astype(float), CAPACITY, TARGET)
    # pairs (0,1) and (3,4): D up, S down in both; the pair across the gap is ignored
    assert got.instability == pytest.approx(100.0)
    assert got.steps == 4


def test_morning_is_weekday_six_to_ten_local_time() -> None:
    cases = {
        datetime(2024, 1, 1, 6, 0, tzinfo=helpers.CEST): True,  # Monday 06:00
        datetime(2024, 1, 5, 9, 59, tzinfo=helpers.CEST): True,  # Friday 09:59
        datetime(2024, 1, 1, 10, 0, tzinfo=helpers.CEST): False,
        datetime(2024, 1, 1, 5, 59, tzinfo=helpers.CEST): False,
        datetime(2024, 1, 6, 7, 0, tzinfo=helpers.CEST): False,  # Saturday
    }
    for stamp, expected in cases.items():
        trace = helpers.make_trace([1.0], start=stamp)
        assert bool(metrics.morning_mask(trace)[0]) is expected, stamp


def test_empty_demand_gives_zero_percentages() -> None:
    trace = helpers.make_trace([0.0, 0.0])
    got = metrics.figures(trace, np.array([1, 1]), np.array([1.0, 1.0]), CAPACITY, TARGET)
    assert (got.theta_u, got.theta_o) == (0.0, 0.0)
    assert got.tau_o == 100.0
