"""The peers' formulas, edge for edge: table tests from the HPA documentation and its controller's rules.

The tolerance band edge holds in exact decimal arithmetic; HPA's configurable tolerance may differ
per direction; a percent rate limit on scale-in removes the rounded-up share; and a fail-safe
scale-up on missing data is bounded in count and in time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

from autoscaler import cli, decide, model
from autoscaler.decide import stages, strategies
from autoscaler.policy import rules, spec
from tests.decide.builders import CPU_CHECK, fleet, fresh, policy

NOW = 1_764_000_000.0


def one(value: float) -> model.Samples:
    return (model.Sample(value, 0.0),)


def tracking(target: float, tolerance: Any = 0.1) -> spec.TargetTracking:
    return spec.TargetTracking.model_validate(
        {"kind": "target_tracking", "target": target, "tolerance": tolerance}
    )


@pytest.mark.parametrize(
    ("value", "target", "tolerance", "expected"),
    [
        # The band edge holds: 110 vs 100 at 0.1 is exactly 1 + 0.1 (floats make it 1.1000000000000001).
        (110.0, 100.0, 0.1, 10),
        (90.0, 100.0, 0.1, 10),
        (0.77, 0.7, 0.1, 10),
        (0.63, 0.7, 0.1, 10),
        # One step past the edge moves: ceil(10 x 1.11) = 12, ceil(10 x 0.89) = 9.
        (111.0, 100.0, 0.1, 12),
        (89.0, 100.0, 0.1, 9),
        # HPA docs (configurable tolerance): scale up only above 105 % of a 100Mi target at up 0.05.
        (105.0, 100.0, {"up": 0.05, "down": 0.1}, 10),
        (106.0, 100.0, {"up": 0.05, "down": 0.1}, 11),
        (90.0, 100.0, {"up": 0.05, "down": 0.1}, 10),
        (89.0, 100.0, {"up": 0.05, "down": 0.1}, 9),
        # An up tolerance above 1: hold until the load triples the target.
        (300.0, 100.0, {"up": 2, "down": 0.1}, 10),
        (301.0, 100.0, {"up": 2, "down": 0.1}, 31),
        # Only one side given: the other keeps the default 0.1.
        (108.0, 100.0, {"up": 0.05}, 11),
        (91.0, 100.0, {"up": 0.05}, 10),
    ],
)
def test_tolerance_band(value: float, target: float, tolerance: Any, expected: int) -> None:
    proposal = strategies.target_tracking(tracking(target, tolerance), 10, 10, one(value))
    assert proposal.count == expected


@pytest.mark.parametrize(("total", "expected"), [(1100.0, 4), (900.0, 4), (1101.0, 5), (899.0, 4)])
def test_per_instance_tolerance_edge_is_exact(total: float, expected: int) -> None:
    strategy = spec.PerInstance.model_validate(
        {"kind": "per_instance", "per_instance": 250, "tolerance": 0.1}
    )
    assert strategies.per_instance(strategy, 4, 4, one(total)).count == expected


def test_single_tolerance_stays_below_one_and_an_up_tolerance_may_exceed_it() -> None:
    with pytest.raises(pydantic.ValidationError, match="single tolerance must be >= 0 and < 1"):
        tracking(0.5, 1.5)
    with pytest.raises(pydantic.ValidationError):
        tracking(0.5, {"up": 0.1, "down": 1.0})
    assert tracking(0.5, {"up": 1.5}).tolerance == spec.Tolerance(up=1.5, down=0.1)
    assert tracking(0.5, 0.2).tolerance == spec.Tolerance(up=0.2, down=0.2)


def rated(direction: str, **rate: Any) -> spec.GroupPolicy:
    return policy(max=500, **{direction: {"rate": {"period": "1m", **rate}}})


@pytest.mark.parametrize(
    ("direction", "rate", "current", "desired", "expected"),
    [
        # HPA's percent policy on scale-in keeps floor(start x (1 - p)): 72 -> 64, then 64 -> 57.
        ("scale_down", {"percent": 10}, 72, 1, 64),
        ("scale_down", {"percent": 10}, 64, 1, 57),
        ("scale_down", {"percent": 50}, 10, 1, 5),
        # A whole share is exact: 50 at 10 % loses 5, not 6.
        ("scale_down", {"percent": 10}, 50, 1, 45),
        # selectPolicy Max: the larger of the pods and percent limits.
        ("scale_down", {"percent": 10, "instances": 10}, 72, 1, 62),
        # Scale-up rounds up too: 10 at +15 % may add 2; 1 at +100 % or +4 pods adds 4.
        ("scale_up", {"percent": 15}, 10, 30, 12),
        ("scale_up", {"percent": 100, "instances": 4}, 1, 30, 5),
        # At least one per period, or a small group under a percent limit would never move.
        ("scale_down", {"percent": 1}, 5, 1, 4),
    ],
)
def test_percent_rate_limit(
    direction: str, rate: dict[str, Any], current: int, desired: int, expected: int
) -> None:
    count, _ = stages.rate_limit(rated(direction, **rate), current, desired, (), NOW)
    assert count == expected


def test_percent_scale_in_counts_what_already_moved_in_the_period() -> None:
    group = rated("scale_down", percent=10)
    moved = (model.Change(NOW - 30, -8),)
    assert stages.rate_limit(group, 64, 1, moved, NOW)[0] == 64  # 72 at the period's start: 8 used
    assert stages.rate_limit(group, 64, 1, moved, NOW + 31)[0] == 57  # the next period starts from 64


def missing_run(rule: dict[str, Any], minutes: int, start: int = 5) -> list[int]:
    """The group's size each minute: fresh and within tolerance at `start`, then the data is gone."""
    group = policy(checks=[{**CPU_CHECK, "on_missing": rule}])
    memory = model.GroupMemory()
    _, memory = decide.evaluate(group, fleet(start), {"cpu": fresh(0.5, NOW)}, memory, NOW)
    sizes, size = [], start
    for minute in range(1, minutes + 1):
        decision, memory = decide.evaluate(
            group, fleet(size), {"cpu": model.Missing()}, memory, NOW + 60 * minute
        )
        size = decision.desired
        sizes.append(size)
    return sizes


@pytest.mark.parametrize(
    ("rule", "minutes", "expected"),
    [
        ({"scale_up": 1}, 6, [6, 7, 8, 9, 10, 11]),  # unbounded: walks on for as long as data is gone
        ({"scale_up": 1, "up_to": 3}, 6, [6, 7, 8, 8, 8, 8]),
        ({"scale_up": 2, "up_to": 3}, 4, [7, 8, 8, 8]),
        ({"scale_up": 1, "for": "3m"}, 6, [6, 7, 8, 8, 8, 8]),
        ({"scale_up": 1, "up_to": 10, "for": "2m"}, 4, [6, 7, 7, 7]),
    ],
)
def test_on_missing_scale_up_is_bounded(rule: dict[str, Any], minutes: int, expected: list[int]) -> None:
    assert missing_run(rule, minutes) == expected


def test_on_missing_bound_restarts_from_the_next_fresh_count() -> None:
    group = policy(checks=[{**CPU_CHECK, "on_missing": {"scale_up": 1, "up_to": 1}}])
    memory = model.GroupMemory()
    _, memory = decide.evaluate(group, fleet(5), {"cpu": fresh(0.5, NOW)}, memory, NOW)
    decision, memory = decide.evaluate(group, fleet(5), {"cpu": model.Missing()}, memory, NOW + 60)
    assert decision.desired == 6
    _, memory = decide.evaluate(group, fleet(6), {"cpu": fresh(0.5, NOW + 120)}, memory, NOW + 120)
    decision, _ = decide.evaluate(group, fleet(6), {"cpu": model.Missing()}, memory, NOW + 180)
    assert decision.desired == 7
    assert "on_missing scale_up 1" in decision.checks[0].detail


def test_bounds_need_a_scale_up() -> None:
    found = list(rules.problems(policy(checks=[{**CPU_CHECK, "on_missing": {"up_to": 2}}])))
    assert found == [(("checks", 0, "on_missing"), "up_to and for bound a scale_up; give scale_up too")]


def test_check_warns_about_an_unbounded_scale_up_without_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "group: web\ngolden: g.qcow2\ntemplate: t\nmin: 1\nmax: 4\nchecks:\n"
        "  - {name: cpu, source: prometheus, query: q, strategy: {kind: fixed, count: 1},"
        " on_missing: {scale_up: 1}}\n"
    )
    (tmp_path / "web.yaml").write_text(text)
    assert cli.main(["check", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "web.yaml:7:" in err
    assert "checks[0].on_missing: warning: scale_up without up_to or for is unbounded" in err
    (tmp_path / "web.yaml").write_text(text.replace("scale_up: 1}", "scale_up: 1, for: 1h}"))
    assert cli.main(["check", str(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().err
