"""The pure decision core: metric inputs and the group's memory in, a fully explained count out.

No I/O, no clock, no logging, no globals: everything arrives as values (`now` included) and
everything decided leaves as values, so the same code runs in the daemon, in `autoscaler explain`
and in the simulator.

Stages, in order (each may change or hold the count and then leaves a Stage in the trail):
bounds_guard, checks, tolerance, combine, forecast, schedule, stabilization, rate_limit,
churn_budget, cooldown, warmup, min_lifetime, bounds, capacity, paused/dry_run; then the scale-in
victims.
"""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler import model
from autoscaler.decide import checks, stages, victims
from autoscaler.policy import schedule, spec


class _Trail:
    """Collects the stages that changed or held the count."""

    def __init__(self, start: int) -> None:
        self.count = start
        self.stages: list[model.Stage] = []

    def apply(self, name: str, result: stages.StageResult, held_from: int | None = None) -> None:
        """Record `name` when it gave a reason; `held_from` is the count it held back from."""
        count, reason = result
        if reason is not None:
            before = self.count if held_from is None else held_from
            self.stages.append(model.Stage(name, before, count, reason))
        self.count = count

    def note(self, name: str, reason: str) -> None:
        """Record a stage that did not change the count but matters to the reader."""
        self.stages.append(model.Stage(name, self.count, self.count, reason))


_JUST_BEFORE = 0.001


def _out_of_touch(policy: spec.GroupPolicy, memory: model.GroupMemory, now: float) -> bool:
    """Whether the memory has not followed the group lately: empty, or its newest entry too old.

    Too old means older than the scale-down window and than two evaluation intervals, so a policy
    evaluated less often than its window still counts its previous evaluation as recent.
    """
    if not memory.recommendations:
        return True
    newest = max(t for t, _ in memory.recommendations)
    return newest < now - max(policy.scale_down.stabilization, 2 * policy.evaluation_interval)


def _remember(
    policy: spec.GroupPolicy,
    memory: model.GroupMemory,
    current_size: int,
    recommendation: int,
    now: float,
    samples: tuple[tuple[str, model.Samples], ...],
    last_fresh: tuple[tuple[str, float, int], ...],
) -> model.GroupMemory:
    horizon = max(policy.scale_up.stabilization, policy.scale_down.stabilization)
    recommendations = tuple((t, c) for t, c in memory.recommendations if t >= now - horizon and t < now)
    if _out_of_touch(policy, memory, now):
        # No recent history (first start, or a restart after a long stop): assume the current size
        # was recommended until just now, so a restart never shrinks the group before a whole
        # scale-down window has been observed.
        recommendations = (*recommendations, (now - _JUST_BEFORE, current_size))
    periods = [d.rate.period for d in (policy.scale_up, policy.scale_down) if d.rate is not None]
    if policy.churn_budget is not None:
        periods.append(policy.churn_budget.period)
    keep = max([*periods, 0.0])
    changes = tuple(c for c in memory.changes if c.at > now - keep)
    return model.GroupMemory(
        (*recommendations, (now, recommendation)),
        changes,
        memory.last_up_at,
        memory.last_down_at,
        samples,
        last_fresh,
    )


def _reason(
    current: int, desired: int, reports: tuple[model.CheckReport, ...], trail: list[model.Stage]
) -> str:
    clipped = [s for s in trail if s.name not in {"check", "tolerance"}]
    why = f"; {clipped[-1].name}: {clipped[-1].reason}" if clipped else ""
    if desired == current:
        head = f"hold at {current}"
    else:
        head = f"scale {'up' if desired > current else 'in'} {current} -> {desired}"
    leader = max(reports, key=lambda r: r.proposal, default=None)
    lead = f" ({leader.name}: {leader.detail})" if leader is not None else ""
    return head + lead + why


_Remembered = tuple[tuple[str, model.Samples], ...]
_Anchors = tuple[tuple[str, float, int], ...]


def _checks(
    policy: spec.GroupPolicy,
    inventory: model.GroupInventory,
    inputs: Mapping[str, model.CheckInput],
    memory: model.GroupMemory,
    now: float,
) -> tuple[tuple[model.CheckReport, ...], list[str], _Remembered, _Anchors]:
    reports: list[model.CheckReport] = []
    tolerated: list[str] = []
    remembered = dict(memory.samples)
    anchors = {name: (at, count) for name, at, count in memory.last_fresh}
    kept: list[tuple[str, model.Samples]] = []
    fresh_at: list[tuple[str, float, int]] = []
    for check in policy.checks:
        raw = inputs.get(check.name)
        before = remembered.get(check.name, ())
        entry, held, samples, anchor = checks.report(
            check, raw, inventory.current, inventory.ready, now, before, anchors.get(check.name)
        )
        reports.append(entry)
        fresh_at.append((check.name, *anchor))
        if held:
            tolerated.append(check.name)
        if samples:
            kept.append((check.name, samples))
    return tuple(reports), tolerated, tuple(kept), tuple(fresh_at)


def _proposed(
    policy: spec.GroupPolicy,
    inventory: model.GroupInventory,
    inputs: Mapping[str, model.CheckInput],
    memory: model.GroupMemory,
    now: float,
    forecast: int | None,
    trail: _Trail,
) -> tuple[tuple[model.CheckReport, ...], _Remembered, _Anchors]:
    """Stages up to the raw recommendation: bounds guard, checks, tolerance, combine, forecast."""
    current = inventory.current
    outside = stages.bounds_guard(policy, current)
    if outside is not None:
        trail.note("bounds_guard", outside)
    reports, tolerated, samples, anchors = _checks(policy, inventory, inputs, memory, now)
    if tolerated:
        trail.note("tolerance", f"{', '.join(tolerated)} within tolerance")
    trail.apply("combine", stages.combine(current, reports), held_from=stages.smallest_fresh(reports))
    trail.apply("forecast", stages.forecast_floor(trail.count, forecast))
    return reports, samples, anchors


def _limited(
    policy: spec.GroupPolicy,
    inventory: model.GroupInventory,
    memory: model.GroupMemory,
    recommendations: tuple[tuple[float, int], ...],
    now: float,
    trail: _Trail,
    windows: schedule.Bounds,
    forecast: int | None,
) -> None:
    """Stages that slow, hold or bound the recommendation, in order."""
    current = inventory.current
    trail.apply("stabilization", stages.stabilize(policy, current, recommendations, now, forecast))
    trail.apply("rate_limit", stages.rate_limit(policy, current, trail.count, memory.changes, now))
    trail.apply("churn_budget", stages.churn(policy, current, trail.count, memory.changes, now))
    trail.apply("cooldown", stages.cooldown(policy, memory, current, trail.count, now), held_from=trail.count)
    trail.apply("warmup", stages.warmup(inventory, current, trail.count), held_from=trail.count)
    trail.apply("min_lifetime", stages.lifetime(policy, inventory, trail.count, now))
    trail.apply("bounds", stages.clamp(policy, trail.count, windows))
    trail.apply("capacity", stages.capacity(inventory, current, trail.count))


def evaluate(
    policy: spec.GroupPolicy,
    inventory: model.GroupInventory,
    inputs: Mapping[str, model.CheckInput],
    memory: model.GroupMemory,
    now: float,
    *,
    forecast: int | None = None,
) -> tuple[model.Decision, model.GroupMemory]:
    """One evaluation of one group: the decision, and the memory to keep for the next one."""
    current = inventory.current
    trail = _Trail(current)
    reports, samples, anchors = _proposed(policy, inventory, inputs, memory, now, forecast, trail)
    windows = schedule.bounds(policy.schedules, now)
    trail.apply("schedule", stages.calendar(trail.count, windows))
    new_memory = _remember(policy, memory, current, trail.count, now, samples, anchors)
    _limited(policy, inventory, memory, new_memory.recommendations, now, trail, windows, forecast)
    act = not (policy.paused or policy.dry_run)
    if not act:
        trail.note("paused" if policy.paused else "dry_run", "decision recorded, not carried out")
    desired = trail.count
    decision = model.Decision(
        group=policy.group,
        at=now,
        current=current,
        desired=desired,
        checks=reports,
        trail=tuple(trail.stages),
        reason=_reason(current, desired, reports, trail.stages),
        act=act,
        victims=victims.choose(policy, inventory, current - desired, now),
    )
    return decision, new_memory
