"""Rules that span several fields (bounds, schedules, steps), so that a file is fixed in one pass.

Part rules look inside one part of a group (a check, a schedule, a rate limit, the readiness) and
also run on the parts that validated when others in the same group did not; group rules compare
parts with the group's bounds and need the whole group valid. Each rule yields the path of the
offending field and a message; the loader locates it in the YAML.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import pydantic

from autoscaler.policy import schedule, spec
from autoscaler.policy.locate import Loc

Found = Iterator[tuple[Loc, str]]


def problems(policy: spec.GroupPolicy) -> Found:
    """Every rule a field-valid group breaks."""
    if policy.min > policy.max:
        yield ("max",), f"max ({policy.max}) is below min ({policy.min})"
    yield from _duplicate_names(policy)
    yield from _schedule_bounds(policy)
    yield from _pacing(policy)
    for loc, part in _parts(policy):
        yield from _within(loc, _PART_RULES[type(part)](part))


def part_problems(data: Mapping[str, Any], invalid: Collection[Loc]) -> Found:
    """The part rules broken by the parts of a raw group that hold no field error themselves."""
    for loc, model, raw in _raw_parts(data):
        if any(tuple(error[: len(loc)]) == loc for error in invalid):
            continue
        try:
            part = model.model_validate(raw, context={"from_file": True})
        except pydantic.ValidationError:
            continue
        yield from _within(loc, _PART_RULES[model](part))


def _within(loc: Loc, found: Found) -> Found:
    for inner, message in found:
        yield (*loc, *inner), message


def _parts(policy: spec.GroupPolicy) -> Iterator[tuple[Loc, spec.Spec]]:
    for index, check in enumerate(policy.checks):
        yield ("checks", index), check
    for index, window in enumerate(policy.schedules):
        yield ("schedules", index), window
    for name in ("scale_up", "scale_down"):
        rate = getattr(policy, name).rate
        if rate is not None:
            yield (name, "rate"), rate
    yield ("readiness",), policy.readiness
    yield ("predictive",), policy.predictive


def _raw_parts(data: Mapping[str, Any]) -> Iterator[tuple[Loc, type[spec.Spec], object]]:
    for key, model in (("checks", spec.Check), ("schedules", spec.Schedule)):
        items = data.get(key)
        if isinstance(items, list):
            for index, item in enumerate(items):
                yield (key, index), model, item
    for name in ("scale_up", "scale_down"):
        direction = data.get(name)
        if isinstance(direction, dict) and direction.get("rate") is not None:
            yield (name, "rate"), spec.RateLimit, direction["rate"]
    single: tuple[tuple[str, type[spec.Spec]], ...] = (
        ("readiness", spec.Readiness),
        ("predictive", spec.Predictive),
    )
    for key, part in single:
        if key in data:
            yield (key,), part, data[key]


# --- group rules ------------------------------------------------------------------------------


def _duplicate_names(policy: spec.GroupPolicy) -> Found:
    seen: set[str] = set()
    for index, check in enumerate(policy.checks):
        if check.name in seen:
            yield ("checks", index, "name"), f"duplicate check name '{check.name}'"
        seen.add(check.name)


def _schedule_bounds(policy: spec.GroupPolicy) -> Found:
    for index, window in enumerate(policy.schedules):
        if window.min is not None and window.min > policy.max:
            yield ("schedules", index, "min"), f"floor {window.min} is above the group's max ({policy.max})"
        if window.max is not None and window.max < policy.min:
            yield ("schedules", index, "max"), f"ceiling {window.max} is below the group's min ({policy.min})"


def _pacing(policy: spec.GroupPolicy) -> Found:
    if policy.scale_up.pacing != "window":
        yield ("scale_up", "pacing"), "pacing: forecast applies to scale-in only (scale_down.pacing)"
    if policy.scale_down.pacing == "forecast" and policy.predictive.mode != "active":
        yield (
            ("scale_down", "pacing"),
            f"pacing: forecast needs predictive.mode: active (it is {policy.predictive.mode}):"
            " without a forecast the stabilization window decides anyway",
        )


def warnings(policy: spec.GroupPolicy) -> Found:
    """Valid but risky settings, reported by `autoscaler check` without failing it."""
    for index, check in enumerate(policy.checks):
        if check.on_missing.unbounded:
            yield (
                ("checks", index, "on_missing"),
                "scale_up without up_to or for is unbounded: a long metrics outage walks the group"
                " to its max (add up_to: M and/or for: D)",
            )


def unknown_sources(policy: spec.GroupPolicy, configured: Sequence[str]) -> Found:
    """Checks (and an enabled predictive section) naming a metric source the daemon does not define.

    Such a group would load and then fail every tick with `unknown_source`; refusing it keeps the
    last good version running and tells the operator where the typo is.
    """
    for index, check in enumerate(policy.checks):
        if check.source not in configured:
            yield ("checks", index, "source"), _unknown_source(check.source, configured)
    predictive = policy.predictive
    if predictive.mode != "off" and predictive.source not in configured:
        yield ("predictive", "source"), _unknown_source(predictive.source, configured)


def _unknown_source(name: str, configured: Sequence[str]) -> str:
    listed = ", ".join(configured) if configured else "none"
    close = difflib.get_close_matches(name, list(configured), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown metric source {name!r} (configured: {listed}){hint}"


# --- part rules -------------------------------------------------------------------------------


def _check(check: spec.Check) -> Found:
    rule = check.on_missing
    if rule.scale_up is not None and rule.fallback is not None:
        yield ("on_missing",), "give either scale_up or fallback, not both"
    if rule.scale_up is None and (rule.up_to is not None or rule.for_ is not None):
        yield ("on_missing",), "up_to and for bound a scale_up; give scale_up too"
    if not check.query and not isinstance(check.strategy, spec.Fixed):
        yield ("query",), "a query is required for this strategy"
    if isinstance(check.strategy, spec.Threshold):
        for index, step in enumerate(check.strategy.steps):
            yield from _within(("strategy", "steps", index), _step(step))


def _step(step: spec.Step) -> Found:
    actions = [name for name in ("change", "percent", "set") if getattr(step, name) is not None]
    if len(actions) != 1:
        yield (), "give exactly one of change, percent or set"
    if step.lower is not None and step.upper is not None and step.lower >= step.upper:
        yield ("upper",), f"upper ({step.upper:g}) must be above lower ({step.lower:g})"


def _schedule(window: spec.Schedule) -> Found:
    try:
        schedule.zone(window.timezone)
    except ValueError as exc:
        yield ("timezone",), str(exc)
    else:
        try:
            schedule.trigger(window.cron, window.timezone)
        except ValueError as exc:
            yield ("cron",), f"invalid cron expression: {exc}"
    if window.min is None and window.max is None:
        yield (), "a schedule needs min, max or both"
    if window.min is not None and window.max is not None and window.min > window.max:
        yield ("max",), f"ceiling {window.max} is below the schedule's own floor {window.min}"


def _rate(rate: spec.RateLimit) -> Found:
    if rate.instances is None and rate.percent is None:
        yield (), "give instances, percent or both"


def _readiness(readiness: spec.Readiness) -> Found:
    if readiness.probe == "tcp" and readiness.port is None:
        yield ("port",), "the tcp probe needs a port"


def _predictive(predictive: spec.Predictive) -> Found:
    if predictive.mode == "active" and not predictive.query.strip():
        yield ("query",), "active predictive scaling needs a query for the group's total load"


_PART_RULES: dict[type[spec.Spec], Callable[[Any], Found]] = {
    spec.Check: _check,
    spec.Schedule: _schedule,
    spec.RateLimit: _rate,
    spec.Readiness: _readiness,
    spec.Predictive: _predictive,
}
