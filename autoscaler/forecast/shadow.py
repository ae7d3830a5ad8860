"""Forecast-only (shadow) bookkeeping: each forecast is scored against the load that really came.

Pure values: the daemon keeps a `Book` per group, calls `expect` when it forecasts and `settle`
with every observed load; `Book.score` feeds the forecast-error metrics it exports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Score:
    """Accumulated error of settled forecasts."""

    count: int = 0
    abs_error: float = 0.0
    actual: float = 0.0
    under: int = 0
    """Forecasts that came out below the real peak."""

    def add(self, predicted: float, actual: float) -> Score:
        """The score with one more settled forecast."""
        under = 1 if predicted < actual else 0
        return Score(
            self.count + 1, self.abs_error + abs(predicted - actual), self.actual + actual, self.under + under
        )

    @property
    def wape(self) -> float | None:
        """Weighted absolute percentage error: sum |error| / sum actual x 100."""
        return 100.0 * self.abs_error / self.actual if self.actual > 0 else None

    @property
    def under_ratio(self) -> float | None:
        """Percentage of forecasts below the real peak."""
        return 100.0 * self.under / self.count if self.count else None


@dataclass(frozen=True, slots=True)
class Calibration:
    """Online calibration: a margin on the forecast that moves until `miss_rate` of forecasts fall short.

    Each settled forecast nudges the margin multiplicatively: up by gain x (1 - miss_rate) when it
    fell short of the load that came, down by gain x miss_rate when it did not, so the margin
    settles where the measured share of short forecasts is `miss_rate` (adaptive conformal
    calibration).  A forecast that is cautious for a noisy load with a flat pattern thus gives
    back what it over-provisions, and one that keeps missing a ramp grows.
    """

    miss_rate: float
    """The share of forecasts allowed to fall short of the load that came."""
    gain: float = 0.01
    """How far one settled forecast moves the margin (log scale)."""
    low: float = 0.5
    high: float = 2.0
    """Bounds of the margin."""

    def step(self, margin: float, short: bool) -> float:
        """The margin after one more settled forecast."""
        moved = margin * math.exp(self.gain * ((1.0 if short else 0.0) - self.miss_rate))
        return min(self.high, max(self.low, moved))


@dataclass(frozen=True, slots=True)
class Pending:
    """One forecast waiting for its span to pass: predicted peak vs the peak seen so far."""

    start: float
    end: float
    predicted: float
    seen: float | None = None


@dataclass(frozen=True, slots=True)
class Book:
    """Open forecasts, the score of the settled ones, and the newest forecast."""

    pending: tuple[Pending, ...] = ()
    score: Score = Score()
    last: float | None = None
    """The newest forecast load, for the gauge."""
    margin: float = 1.0
    """The calibrated factor on the model's forecast (1 without calibration)."""

    def expect(self, start: float, end: float, predicted: float) -> Book:
        """Record a forecast of the peak load over [start, end]."""
        return replace(self, pending=(*self.pending, Pending(start, end, predicted)), last=predicted)

    def settle(self, at: float, actual: float, calibration: Calibration | None = None) -> Book:
        """Take in the load observed at `at`; forecasts whose span has passed are scored (and, with a
        calibration, move the margin)."""
        still: list[Pending] = []
        score, margin = self.score, self.margin
        for waiting in self.pending:
            entry = waiting
            if entry.start <= at <= entry.end:
                entry = replace(entry, seen=actual if entry.seen is None else max(entry.seen, actual))
            if at >= entry.end:
                if entry.seen is not None:
                    score = score.add(entry.predicted, entry.seen)
                    if calibration is not None:
                        margin = calibration.step(margin, entry.predicted < entry.seen)
                continue
            still.append(entry)
        return replace(self, pending=tuple(still), score=score, margin=margin)
