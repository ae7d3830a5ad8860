"""How a group handler shows itself to the outside: the metrics snapshot, the /status document and
the logs that mark where failures begin and end, kept apart from the deciding and acting."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from autoscaler import model
from autoscaler.engine import health, journal
from autoscaler.policy import schedule, spec
from autoscaler.telemetry import metrics as telemetry

log = structlog.get_logger("autoscaler.engine")


class FailureEdges:
    """Logs once when a failure kind begins and once when it ends (counters carry the repeats)."""

    def __init__(self) -> None:
        self._failing: set[str] = set()

    def mark(self, kind: str, failing: bool, **fields: Any) -> None:
        """Record whether `kind` is failing now, logging only the change."""
        if failing and kind not in self._failing:
            self._failing.add(kind)
            log.warning("failure_began", kind=kind, **fields)
        elif not failing and kind in self._failing:
            self._failing.discard(kind)
            log.info("failure_recovered", kind=kind)


class SourceEdges:
    """One info line when a check's source starts failing and one when it answers again.

    The checks' counters carry every failed query; this says, once, that an outage began and
    ended (a missing or stale answer is data, not a failing source).
    """

    def __init__(self) -> None:
        self._failing: dict[str, str] = {}
        """Check name -> the error class it began failing with."""

    def update(self, policy: spec.GroupPolicy, found: dict[str, model.CheckInput]) -> None:
        """Compare this tick's inputs with the last and log the edges."""
        for check in policy.checks:
            got = found.get(check.name)
            if isinstance(got, model.Failed) and check.name not in self._failing:
                self._failing[check.name] = got.error_class
                log.info(
                    "check_source_failing",
                    group=policy.group,
                    check=check.name,
                    source=check.source,
                    error_class=got.error_class,
                )
            elif got is not None and not isinstance(got, model.Failed) and check.name in self._failing:
                began = self._failing.pop(check.name)
                log.info(
                    "check_source_recovered",
                    group=policy.group,
                    check=check.name,
                    source=check.source,
                    error_class=began,
                )


class DecisionLog:
    """Logs a decision when it says something new: a held decision is logged once, not per tick."""

    def __init__(self) -> None:
        self._last_said: tuple[str, int, int] | None = None
        """The last logged (outcome, current, desired)."""

    def say(self, decision: model.Decision, outcome: str, state: str) -> None:
        """Log `decision` and its outcome unless nothing happened or it repeats the last one."""
        said = (outcome, decision.current, decision.desired)
        if outcome != "none" and said != self._last_said:
            self._last_said = said
            log.info(
                "decision",
                current=decision.current,
                desired=decision.desired,
                outcome=outcome,
                reason=decision.reason,
                state=state,
            )


def snapshot(
    inventory: model.GroupInventory,
    policy: spec.GroupPolicy,
    last: journal.Entry | None,
    state: str,
    cooldown_remaining: float,
    desired: int | None,
) -> telemetry.GroupSnapshot:
    """The group's gauges; `desired` defaults to the last decision's, else the current size."""
    if desired is None:
        desired = last.decision.desired if last is not None else inventory.current
    return telemetry.GroupSnapshot.of(
        inventory,
        desired=desired,
        low=policy.min,
        high=policy.max,
        state=state,
        cooldown_remaining=cooldown_remaining,
        last_evaluation=last.decision.at if last is not None else None,
    )


def members(inventory: model.GroupInventory) -> list[dict[str, Any]]:
    """The group's members as /status lists them."""
    return [_member(i) for i in inventory.instances]


def replacements(done: Iterable[health.Replacement]) -> list[dict[str, Any]]:
    """The recent replacements of broken members as /status lists them."""
    return [_replacement(r) for r in done]


class Windows:
    """The policy's calendar windows as /status lists them, each worked out again only once it
    opens or closes (a cron calculation costs a few hundred microseconds, and /status is polled)."""

    def __init__(self) -> None:
        self._known: dict[spec.Schedule, tuple[float, float, schedule.WindowTimes]] = {}
        """Per window: (computed at, valid until, its times)."""

    def shown(self, policy: spec.GroupPolicy, now: float) -> list[dict[str, Any]]:
        """Each window: open until when, or opening next when."""
        self._known = {w: self._known[w] for w in policy.schedules if w in self._known}
        return [
            _window(index, window, self._times(window, now)) for index, window in enumerate(policy.schedules)
        ]

    def _times(self, window: spec.Schedule, now: float) -> schedule.WindowTimes:
        known = self._known.get(window)
        if known is not None and known[0] <= now < known[1]:
            return known[2]
        try:
            found = schedule.times(window, now)
        except ValueError:  # validated at load; a zone database changed since then must not break /status
            found = schedule.WindowTimes(False, None, None)
        changes = [t for t in (found.closes_at, found.next_opening) if t is not None]
        self._known[window] = (now, min(changes, default=now), found)
        return found


def schedules(policy: spec.GroupPolicy, now: float) -> list[dict[str, Any]]:
    """The policy's calendar windows as /status lists them (worked out afresh)."""
    return Windows().shown(policy, now)


def _window(index: int, window: spec.Schedule, found: schedule.WindowTimes) -> dict[str, Any]:
    return {
        "name": window.name or f"schedules[{index}]",
        "cron": window.cron,
        "timezone": window.timezone,
        "duration": window.duration,
        "min": window.min,
        "max": window.max,
        "open": found.open,
        "closes_at": found.closes_at,
        "next_opening": found.next_opening,
    }


def _member(instance: model.Instance) -> dict[str, Any]:
    return {
        "name": instance.name,
        "state": instance.state.value,
        "created_at": instance.created_at,
        "ready_at": instance.ready_at,
        "host": instance.host,
        "addresses": list(instance.addresses),
        "outdated": instance.outdated,
        "note": instance.note,
    }


def _replacement(replacement: health.Replacement) -> dict[str, Any]:
    return {
        "at": replacement.at,
        "broken": list(replacement.broken),
        "created": list(replacement.created),
        "removed": list(replacement.removed),
        "errors": list(replacement.errors),
    }
