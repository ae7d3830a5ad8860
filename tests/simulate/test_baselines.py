"""The peer baselines on synthetic load steps: each reacts with its documented timing."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler import simulate
from autoscaler.simulate import metrics
from tests.simulate import helpers

SETUP = simulate.Setup(capacity=10.0, boot_time=60.0, report_delay=0.0)  # demand = ceil(value / 7)
"""Rows seen at their own timestamp, so the hand timings below count from the row itself."""


def _first_row_reaching(supply: np.ndarray, count: int) -> int:
    return int(np.flatnonzero(supply >= count)[0])


def test_hpa_scales_out_within_a_sync_and_a_boot() -> None:
    trace = helpers.make_trace([7.0] * 5 + [70.0] * 10)  # 1 -> 10 instances at row 5
    run = simulate.run_baseline("hpa", trace, SETUP)
    # +max(100 %, 4) per 15 s: 1 -> 5 at 300 s, -> 10 at 315 s; each ready one boot time later
    assert run.supply[6] == 5
    assert _first_row_reaching(run.supply, 10) == 7


def test_hpa_waits_out_its_scale_down_stabilization() -> None:
    trace = helpers.make_trace([70.0] * 5 + [7.0] * 10)
    run = simulate.run_baseline("hpa", trace, SETUP)
    assert run.supply[5:9].tolist() == [10, 10, 10, 10]  # 300 s window from row 5
    assert run.supply[11] == 1


def test_aws_needs_three_breaching_minutes_to_scale_out() -> None:
    trace = helpers.make_trace([7.0] * 5 + [70.0] * 10)
    run = simulate.run_baseline("aws", trace, SETUP)
    # alarms at rows 5, 6, 7 -> action at row 7 -> ready at row 8
    assert _first_row_reaching(run.supply, 10) == 8


def test_aws_needs_fifteen_low_minutes_to_scale_in() -> None:
    trace = helpers.make_trace([70.0] * 3 + [7.0] * 25)
    run = simulate.run_baseline("aws", trace, SETUP)
    assert run.supply[3 + 13] == 10
    assert run.supply[3 + 14] == 1


def test_static_holds_the_peak_and_the_oracle_follows_demand() -> None:
    trace = helpers.make_trace([7.0, 14.0, 70.0, 7.0])
    static = simulate.run_baseline("static", trace, SETUP)
    oracle = simulate.run_baseline("oracle", trace, SETUP)
    assert static.supply.tolist() == [10, 10, 10, 10]
    assert oracle.supply.tolist() == [1, 2, 10, 1]
    # each row also pays for what boots during it for the next row (boot = one step)
    assert oracle.alive.tolist() == [2.0, 10.0, 10.0, 1.0]


def test_oracle_is_never_under_provisioned() -> None:
    rng = np.random.default_rng(7)
    trace = helpers.make_trace(list(rng.uniform(0, 100, 200)), step=300)
    run = simulate.run_baseline("oracle", trace, SETUP)
    got = metrics.figures(trace, run.supply, run.alive, SETUP.capacity, 0.7)
    assert (got.theta_u, got.theta_o, got.slo_violation_minutes) == (0.0, 0.0, 0.0)
    assert got.instance_hours > float(run.supply.sum()) * 300 / 3600


def test_unknown_baseline_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown baseline"):
        simulate.run_baseline("keda", helpers.make_trace([1.0]), SETUP)
