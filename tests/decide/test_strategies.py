"""Table tests for each strategy, including the worked examples of the Kubernetes HPA documentation."""

from __future__ import annotations

import pytest

from autoscaler import model
from autoscaler.decide import strategies
from autoscaler.policy import spec


def samples(*values: float) -> model.Samples:
    return tuple(model.Sample(v, float(i)) for i, v in enumerate(values))


def tracking(target: float, tolerance: float = 0.1) -> spec.TargetTracking:
    return spec.TargetTracking(kind="target_tracking", target=target, tolerance=tolerance)


@pytest.mark.parametrize(
    ("current", "ready", "value", "target", "expected"),
    [
        # HPA docs: 200m against a 100m target doubles the replicas.
        (3, 3, 0.200, 0.100, 6),
        # HPA docs: 50m against a 100m target halves them.
        (4, 4, 0.050, 0.100, 2),
        # HPA walkthrough: one pod at 305 % CPU against a 50 % target -> 7 pods.
        (1, 1, 3.05, 0.50, 7),
        # Within the 10 % tolerance nothing moves (ratio 1.08 and 0.92).
        (10, 10, 0.54, 0.50, 10),
        (10, 10, 0.46, 0.50, 10),
        # Just outside the tolerance it moves: ceil(10 * 0.56 / 0.5) = 12.
        (10, 10, 0.56, 0.50, 12),
        # Nomad docs example: 10 instances, target 70, metric 80 -> ceil(11.43) = 12.
        (10, 10, 80.0, 70.0, 12),
        # Booting members carry no load: the ratio applies to the ready ones.
        (6, 4, 0.75, 0.50, 6),
        (6, 4, 1.00, 0.50, 8),
        # From zero members the value itself is the measure.
        (0, 0, 1.2, 0.5, 3),
    ],
)
def test_target_tracking(current: int, ready: int, value: float, target: float, expected: int) -> None:
    proposal = strategies.target_tracking(tracking(target), current, ready, samples(value))
    assert proposal.count == expected


def test_target_tracking_overload_never_proposes_scale_in_while_members_boot() -> None:
    # 2 ready of 6 at 1.2x target: ceil(2 * 1.2) = 3 < 6, yet load is above target.
    proposal = strategies.target_tracking(tracking(0.5), 6, 2, samples(0.6))
    assert proposal.count == 6


def test_target_tracking_reports_tolerated_change() -> None:
    proposal = strategies.target_tracking(tracking(0.5), 10, 10, samples(0.54))
    assert proposal.tolerated
    assert "within tolerance" in proposal.detail


@pytest.mark.parametrize(
    ("current", "total", "per_instance", "expected"),
    [
        (0, 1000.0, 250.0, 4),  # HPA AverageValue: ceil(sum / target)
        (4, 1001.0, 250.0, 4),  # within tolerance of 4 * 250
        (4, 1500.0, 250.0, 6),
        (8, 900.0, 250.0, 4),
        (3, 0.0, 250.0, 0),
    ],
)
def test_per_instance(current: int, total: float, per_instance: float, expected: int) -> None:
    strategy = spec.PerInstance(kind="per_instance", per_instance=per_instance)
    assert strategies.per_instance(strategy, current, current, samples(total)).count == expected


STEPS = spec.Threshold(
    kind="threshold",
    steps=(
        spec.Step(lower=0.9, set=20),
        spec.Step(lower=0.8, upper=0.9, change=2),
        spec.Step(lower=0.6, upper=0.8, percent=50),
        spec.Step(upper=0.2, percent=-30),
        spec.Step(lower=0.2, upper=0.3, change=-1),
    ),
)


@pytest.mark.parametrize(
    ("current", "value", "expected"),
    [
        (5, 0.95, 20),  # set
        (5, 0.85, 7),  # +2
        (5, 0.70, 8),  # +50 % of 5 = 2.5, additions round up -> +3
        (5, 0.10, 4),  # -30 % of 5 = 1.5, removals round down -> -1
        (5, 0.25, 4),  # -1
        (5, 0.50, 5),  # in no band: hold
        (0, 0.25, 0),  # never below zero
    ],
)
def test_threshold_steps(current: int, value: float, expected: int) -> None:
    assert strategies.threshold(STEPS, current, current, samples(value)).count == expected


def test_threshold_waits_for_trigger_samples() -> None:
    strategy = spec.Threshold(kind="threshold", steps=(spec.Step(lower=0.8, change=1),), trigger_samples=3)
    assert strategies.threshold(strategy, 4, 4, samples(0.5, 0.9, 0.9)).count == 4
    assert strategies.threshold(strategy, 4, 4, samples(0.9, 0.9, 0.9)).count == 5


def test_fixed_and_pass_through() -> None:
    assert strategies.fixed(spec.Fixed(kind="fixed", count=7), 3, 3, ()).count == 7
    pass_through = spec.PassThrough(kind="pass_through")
    assert strategies.pass_through(pass_through, 3, 3, samples(4.2)).count == 5
    assert strategies.pass_through(pass_through, 3, 3, samples(-2.0)).count == 0
