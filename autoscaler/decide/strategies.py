"""Strategies: pure functions that turn one check's fresh samples into the count that check wants."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from autoscaler import model
from autoscaler.policy import spec

_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a strategy asks for, and how it got there."""

    count: int
    value: float | None
    detail: str
    tolerated: bool = False
    """True when the raw result was inside the tolerance band and was held at the current count."""


def ceil(x: float) -> int:
    """Ceiling that ignores float noise (3.0000000001 is 3), never below zero."""
    return max(0, math.ceil(x - _EPSILON))


def exact(x: float) -> Fraction:
    """`x` as the decimal it was written as: the shortest repr that reads back as x, so 0.1 is 1/10.

    Binary floats make 110 / 100 - 1 come out a hair above 0.1; the operator meant the band edge
    itself, so band comparisons run on these fractions (HPA's own float comparison scales up there).
    """
    return Fraction(repr(float(x)))


def within(value: float, target: float, tolerance: spec.Tolerance) -> bool:
    """Whether value / target lies in the band [1 - down, 1 + up], edges included, in exact decimals.

    Floats settle every ratio clearly inside or outside the band; only one within float noise of
    an edge is decided on exact fractions (they cost microseconds, and a replay makes millions).
    """
    ratio = value / target
    low, high = 1.0 - tolerance.down, 1.0 + tolerance.up
    if low + _EPSILON < ratio < high - _EPSILON:
        return True
    if ratio < low - _EPSILON or ratio > high + _EPSILON:
        return False
    exact_ratio = exact(value) / exact(target)
    return 1 - exact(tolerance.down) <= exact_ratio <= 1 + exact(tolerance.up)


def target_tracking(
    strategy: spec.TargetTracking, current: int, ready: int, samples: model.Samples
) -> Proposal:
    """HPA rule over ready members: desired = ceil(ready * value / target), held inside the tolerance."""
    value = samples[-1].value
    ratio = value / strategy.target
    base = ready if ready > 0 else current
    if base == 0:
        return Proposal(ceil(ratio), value, f"no members: ceil({value:g} / {strategy.target:g})")
    if within(value, strategy.target, strategy.tolerance):
        raw = ceil(base * ratio)
        return Proposal(
            current, value, f"{value:g} vs target {strategy.target:g}: within tolerance", raw != current
        )
    wanted = ceil(base * ratio)
    # Booting members carry no load yet: never let them turn an overload into a scale-in proposal.
    count = max(wanted, current) if ratio > 1 else min(wanted, current)
    return Proposal(count, value, f"ceil({base} * {value:g} / {strategy.target:g}) = {wanted}")


def per_instance(strategy: spec.PerInstance, current: int, ready: int, samples: model.Samples) -> Proposal:
    """AverageValue rule: desired = ceil(total / per_instance), held inside the tolerance."""
    total = samples[-1].value
    wanted = ceil(total / strategy.per_instance)
    if current > 0 and within(total / current, strategy.per_instance, strategy.tolerance):
        detail = f"{total:g} / {current} per instance vs {strategy.per_instance:g}: within tolerance"
        return Proposal(current, total, detail, wanted != current)
    return Proposal(wanted, total, f"ceil({total:g} / {strategy.per_instance:g}) = {wanted}")


def _in_band(step: spec.Step, value: float) -> bool:
    above = step.lower is None or value >= step.lower
    below = step.upper is None or value < step.upper
    return above and below


def _apply_step(step: spec.Step, current: int) -> int:
    if step.set is not None:
        return step.set
    if step.change is not None:
        return max(0, current + step.change)
    percent = step.percent or 0.0
    amount = current * abs(percent) / 100.0
    # As AWS does: additions round up, removals round down.
    return current + ceil(amount) if percent > 0 else current - math.floor(amount + _EPSILON)


def threshold(strategy: spec.Threshold, current: int, ready: int, samples: model.Samples) -> Proposal:
    """Step scaling: the first band holding the newest `trigger_samples` values decides the change."""
    newest = samples[-strategy.trigger_samples :]
    value = samples[-1].value
    for index, step in enumerate(strategy.steps):
        if not _in_band(step, value):
            continue
        if len(newest) < strategy.trigger_samples or not all(_in_band(step, s.value) for s in newest):
            return Proposal(
                current, value, f"steps[{index}] not yet held for {strategy.trigger_samples} samples"
            )
        return Proposal(_apply_step(step, current), value, f"{value:g} in steps[{index}]")
    return Proposal(current, value, f"{value:g} in no band")


def fixed(strategy: spec.Fixed, current: int, ready: int, samples: model.Samples) -> Proposal:
    """Always the configured count."""
    return Proposal(strategy.count, None, f"fixed {strategy.count}")


def pass_through(strategy: spec.PassThrough, current: int, ready: int, samples: model.Samples) -> Proposal:
    """The metric is the count."""
    value = samples[-1].value
    return Proposal(ceil(value), value, f"metric is the count: {value:g}")


StrategyFunction = Callable[[Any, int, int, model.Samples], Proposal]

STRATEGIES: dict[str, StrategyFunction] = {
    "target_tracking": target_tracking,
    "per_instance": per_instance,
    "threshold": threshold,
    "fixed": fixed,
    "pass_through": pass_through,
}
"""Strategy functions by the policy's `strategy.kind`."""


def samples_read(strategy: spec.Strategy) -> int:
    """How many of the newest samples the strategy reads (a threshold's trigger_samples, else one)."""
    return strategy.trigger_samples if isinstance(strategy, spec.Threshold) else 1


def needs_samples(strategy: spec.Strategy) -> bool:
    """Whether the strategy reads its metric at all (fixed does not)."""
    return not isinstance(strategy, spec.Fixed)


def propose(strategy: spec.Strategy, current: int, ready: int, samples: model.Samples) -> Proposal:
    """Run the strategy named by `strategy.kind`."""
    return STRATEGIES[strategy.kind](strategy, current, ready, samples)
