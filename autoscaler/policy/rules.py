"""Rules that span several fields of a group (bounds, schedules, steps), checked once every field is valid.

Each rule yields the path of the offending field and a message; the loader locates it in the YAML.
"""

from __future__ import annotations

from collections.abc import Iterator

from autoscaler.policy import schedule, spec
from autoscaler.policy.locate import Loc


def problems(policy: spec.GroupPolicy) -> Iterator[tuple[Loc, str]]:
    if policy.min > policy.max:
        yield ("max",), f"max ({policy.max}) is below min ({policy.min})"
    yield from _checks(policy)
    yield from _directions(policy)
    yield from _schedules(policy)
    if policy.readiness.probe == "tcp" and policy.readiness.port is None:
        yield ("readiness", "port"), "the tcp probe needs a port"


def _checks(policy: spec.GroupPolicy) -> Iterator[tuple[Loc, str]]:
    seen: set[str] = set()
    for index, check in enumerate(policy.checks):
        if check.name in seen:
            yield ("checks", index, "name"), f"duplicate check name '{check.name}'"
        seen.add(check.name)
        if check.on_missing.scale_up is not None and check.on_missing.fallback is not None:
            yield ("checks", index, "on_missing"), "give either scale_up or fallback, not both"
        if not check.query and not isinstance(check.strategy, spec.Fixed):
            yield ("checks", index, "query"), "a query is required for this strategy"
        if isinstance(check.strategy, spec.Threshold):
            yield from _steps(index, check.strategy)


def _steps(check_index: int, strategy: spec.Threshold) -> Iterator[tuple[Loc, str]]:
    for index, step in enumerate(strategy.steps):
        loc: Loc = ("checks", check_index, "strategy", "steps", index)
        actions = [name for name in ("change", "percent", "set") if getattr(step, name) is not None]
        if len(actions) != 1:
            yield loc, "give exactly one of change, percent or set"
        if step.lower is not None and step.upper is not None and step.lower >= step.upper:
            yield (*loc, "upper"), f"upper ({step.upper:g}) must be above lower ({step.lower:g})"


def _directions(policy: spec.GroupPolicy) -> Iterator[tuple[Loc, str]]:
    for name in ("scale_up", "scale_down"):
        rate = getattr(policy, name).rate
        if rate is not None and rate.instances is None and rate.percent is None:
            yield (name, "rate"), "give instances, percent or both"


def _schedules(policy: spec.GroupPolicy) -> Iterator[tuple[Loc, str]]:
    for index, window in enumerate(policy.schedules):
        loc: Loc = ("schedules", index)
        try:
            schedule.zone(window.timezone)
        except ValueError as exc:
            yield (*loc, "timezone"), str(exc)
        else:
            try:
                schedule.trigger(window.cron, window.timezone)
            except ValueError as exc:
                yield (*loc, "cron"), f"invalid cron expression: {exc}"
        if window.min is None and window.max is None:
            yield loc, "a schedule needs min, max or both"
        if window.min is not None and window.min > policy.max:
            yield (*loc, "min"), f"floor {window.min} is above the group's max ({policy.max})"
        if window.max is not None and window.max < policy.min:
            yield (*loc, "max"), f"ceiling {window.max} is below the group's min ({policy.min})"
