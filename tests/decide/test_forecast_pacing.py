"""Scale-in that follows the forecast's fall (scale_down.pacing: forecast) instead of a fixed window."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler import decide, model
from autoscaler.policy import files, rules
from tests.decide.builders import fleet, fresh, policy

NOW = 1_764_000_000.0
PREDICTIVE: dict[str, Any] = {"mode": "active", "query": "sum(load)"}


def _falling(pacing: str, forecasts: list[int | None]) -> tuple[list[int], list[model.Decision]]:
    """A group of 10 whose load halves at minute 0; one evaluation a minute with these forecasts."""
    group = policy(
        scale_down={"stabilization": "5m", "pacing": pacing},
        predictive=PREDICTIVE if pacing == "forecast" else {},
    )
    memory = model.GroupMemory()
    _, memory = decide.evaluate(group, fleet(10), {"cpu": fresh(0.5, NOW - 60)}, memory, NOW - 60)
    size, sizes, decisions = 10, [], []
    for minute, floor in enumerate(forecasts):
        now = NOW + 60 * minute
        inputs = {"cpu": fresh(0.25 * 10 / size, now)}  # the load of 5 members at target, spread out
        decision, memory = decide.evaluate(group, fleet(size), inputs, memory, now, forecast=floor)
        memory = memory.record_change(now, decision.desired - size)
        size = decision.desired
        sizes.append(size)
        decisions.append(decision)
    return sizes, decisions


@pytest.mark.parametrize(
    ("pacing", "forecasts", "expected"),
    [
        # The window holds the highest recommendation of the last 5 minutes, whatever the forecast.
        ("window", [5, 5, 5, 5, 5, 5], [10, 10, 10, 10, 10, 5]),
        # Paced by the forecast: down at once to what the checks want and the forecast needs.
        ("forecast", [5, 5, 5, 5, 5, 5], [5, 5, 5, 5, 5, 5]),
        ("forecast", [8, 7, 6, 5, 5, 5], [8, 7, 6, 5, 5, 5]),
        # No forecast (no history yet): the window decides.
        ("forecast", [None] * 6, [10, 10, 10, 10, 10, 5]),
        # The forecast going away: the window holds what was recommended in its last 5 minutes.
        ("forecast", [8, None, None, None, None, None, None], [8, 8, 8, 8, 8, 8, 5]),
    ],
)
def test_scale_in_follows_the_forecast(pacing: str, forecasts: list[int | None], expected: list[int]) -> None:
    sizes, _ = _falling(pacing, forecasts)
    assert sizes == expected


def test_the_trail_says_what_the_window_would_have_held() -> None:
    _, decisions = _falling("forecast", [7])
    stage = next(s for s in decisions[0].trail if s.name == "stabilization")
    assert stage.reason == "scale-in follows the forecast's fall (needs 7), not the 5m window's 10"
    assert "stabilization: scale-in follows the forecast's fall" in decisions[0].reason


def test_scale_up_never_paced_by_the_forecast() -> None:
    group = policy(scale_up={"pacing": "forecast"}, predictive=PREDICTIVE)
    found = list(rules.problems(group))
    assert found == [
        (("scale_up", "pacing"), "pacing: forecast applies to scale-in only (scale_down.pacing)")
    ]


def test_forecast_pacing_without_an_active_forecast_is_located() -> None:
    text = (
        "group: web\ngolden: g.qcow2\ntemplate: t\nmin: 1\nmax: 4\n"
        "scale_down:\n  stabilization: 5m\n  pacing: forecast\n"
        "predictive: {mode: shadow, query: q}\n"
    )
    groups, problems = files.load_text(text, "web.yaml")
    assert groups == []
    assert [str(p) for p in problems] == [
        "web.yaml:8:11: scale_down.pacing: pacing: forecast needs predictive.mode: active (it is shadow):"
        " without a forecast the stabilization window decides anyway"
    ]
    assert files.load_text(text.replace("shadow", "active"), "web.yaml")[1] == []


def test_an_unknown_pacing_is_refused() -> None:
    text = "group: web\ngolden: g.qcow2\ntemplate: t\nmin: 1\nmax: 4\nscale_down: {pacing: fast}\n"
    _, problems = files.load_text(text, "web.yaml")
    assert len(problems) == 1
    assert str(problems[0]) == (
        "web.yaml:6:22: scale_down.pacing: expected one of 'window', 'forecast', got 'fast';"
        " did you mean 'forecast'?"
    )
