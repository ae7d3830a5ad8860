"""Online calibration: the forecast's margin settles where the chosen share of forecasts fall short."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler import forecast
from autoscaler.forecast import shadow
from autoscaler.policy import spec


def test_a_short_forecast_raises_the_margin_and_a_covering_one_lowers_it() -> None:
    calibration = shadow.Calibration(miss_rate=0.1, gain=0.1)
    assert calibration.step(1.0, short=True) == pytest.approx(np.exp(0.09))
    assert calibration.step(1.0, short=False) == pytest.approx(np.exp(-0.01))
    assert calibration.step(1.99, short=True) == 2.0  # bounded
    assert calibration.step(0.5, short=False) == 0.5


def _run(truth: np.ndarray, forecasts: np.ndarray, calibration: shadow.Calibration | None) -> shadow.Book:
    book = shadow.Book()
    for t, (actual, raw) in enumerate(zip(truth, forecasts, strict=True)):
        book = book.expect(float(t), float(t), float(raw) * book.margin)
        book = book.settle(float(t), float(actual), calibration)
    return book


def test_the_measured_miss_share_converges_to_the_chosen_rate() -> None:
    rng = np.random.default_rng(7)
    truth = 100.0 + rng.normal(0.0, 10.0, 6000)
    cautious = np.full(truth.size, 160.0)  # a forecast that never misses and over-provisions by far
    book = _run(truth, cautious, shadow.Calibration(miss_rate=0.1))
    late = _run(truth[3000:], cautious[3000:] * book.margin, None)
    assert late.score.under_ratio == pytest.approx(10.0, abs=3.0)
    assert book.margin < 0.9  # it gave back most of what the fixed forecast over-provisioned
    assert _run(truth, cautious, None).margin == 1.0  # without calibration nothing moves


def test_the_policy_turns_calibration_on_by_its_miss_rate() -> None:
    assert forecast.calibration_for(spec.Predictive()) is None
    assert forecast.calibration_for(spec.Predictive(miss_rate=0.05)) == shadow.Calibration(0.05)
