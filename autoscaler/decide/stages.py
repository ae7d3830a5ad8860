"""The stages between the checks' proposals and the final count; each returns (count, reason or None).

A reason means the stage changed or held the count; the pipeline writes it into the decision trail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from autoscaler import model
from autoscaler.decide import strategies
from autoscaler.policy import durations, schedule, spec

StageResult = tuple[int, str | None]


def bounds_guard(policy: spec.GroupPolicy, current: int) -> str | None:
    """Why the group must move to its bounds whatever the metrics say, if it is outside them."""
    if current < policy.min:
        return f"{current} is below min {policy.min}"
    if current > policy.max:
        return f"{current} is above max {policy.max}"
    return None


def combine(current: int, reports: Sequence[model.CheckReport]) -> StageResult:
    """Safest wins: the largest proposal; a scale-in only when every check is fresh and agrees."""
    if not reports:
        return current, None
    best = max(r.proposal for r in reports)
    if best > current:
        return best, None
    unusable = [r.name for r in reports if r.kind != "fresh"]
    wants_in = best < current or any(r.kind == "fresh" and r.proposal < current for r in reports)
    if unusable and wants_in:
        return current, f"scale-in blocked: {', '.join(unusable)} not fresh"
    return best, None


def smallest_fresh(reports: Sequence[model.CheckReport]) -> int | None:
    """The lowest count a fresh check asked for (what a blocked scale-in was held back from)."""
    return min((r.proposal for r in reports if r.kind == "fresh"), default=None)


def forecast_floor(desired: int, forecast: int | None) -> StageResult:
    """The forecast raises the count ahead of demand; it never lowers it."""
    if forecast is None or forecast <= desired:
        return desired, None
    return forecast, f"forecast needs {forecast} one lead time ahead"


def calendar(desired: int, bounds: schedule.Bounds) -> StageResult:
    """Open schedule windows raise the floor and lower the ceiling."""
    if bounds.floor is not None and desired < bounds.floor:
        return bounds.floor, f"schedule {bounds.floor_by} floor {bounds.floor}"
    if bounds.ceiling is not None and desired > bounds.ceiling:
        return bounds.ceiling, f"schedule {bounds.ceiling_by} ceiling {bounds.ceiling}"
    return desired, None


def stabilize(
    policy: spec.GroupPolicy,
    current: int,
    recommendations: Sequence[tuple[float, int]],
    now: float,
    forecast: int | None = None,
) -> StageResult:
    """HPA rule: up takes the minimum over the up window, down the maximum over the down window.

    With `scale_down.pacing: forecast` and a forecast at hand, scale-in follows the forecast's fall
    instead: the newest recommendation (the checks, already raised to the forecast floor) stands,
    because the forecast vouches for the next lead time and the window would only repeat the past.
    """
    desired = recommendations[-1][1]
    up_since = now - policy.scale_up.stabilization
    down_since = now - policy.scale_down.stabilization
    up = min(c for t, c in recommendations if t >= up_since or t == now)
    down = max(c for t, c in recommendations if t >= down_since or t == now)
    if desired < current and down > desired and _paced_by_forecast(policy, forecast):
        span = durations.format_seconds(policy.scale_down.stabilization)
        why = f"scale-in follows the forecast's fall (needs {forecast}), not the {span} window's {down}"
        return desired, why
    stable = up if up > current else down if down < current else current
    if stable == desired:
        return stable, None
    if stable < desired:
        span = durations.format_seconds(policy.scale_up.stabilization)
        return stable, f"lowest recommendation in the {span} scale-up window"
    span = durations.format_seconds(policy.scale_down.stabilization)
    return stable, f"highest recommendation in the {span} scale-down window"


def _paced_by_forecast(policy: spec.GroupPolicy, forecast: int | None) -> bool:
    return policy.scale_down.pacing == "forecast" and forecast is not None


def _moved(changes: Sequence[model.Change], up: bool, since: float) -> int:
    return sum(abs(c.delta) for c in changes if c.at > since and (c.delta > 0) == up)


def rate_limit(
    policy: spec.GroupPolicy, current: int, desired: int, changes: Sequence[model.Change], now: float
) -> StageResult:
    """At most N instances or P % per period, whichever allows more (HPA's selectPolicy Max)."""
    up = desired > current
    rate = (policy.scale_up if up else policy.scale_down).rate
    if rate is None or desired == current:
        return desired, None
    moved = _moved(changes, up, now - rate.period)
    start = current - moved if up else current + moved
    # As HPA: the percent share is rounded up either way (72 at 10 % may lose 8, leaving 64, as
    # HPA's floor(72 x 0.9)), in exact decimal arithmetic so that 50 x 10 % is 5, not 5.000001.
    by_percent = math.ceil(start * strategies.exact(rate.percent or 0.0) / 100)
    # At least one per period either way, or a small group under a percent limit would never move.
    allowed = max(rate.instances or 0, by_percent, 1)
    if up:
        limit = max(start + allowed, current)
        limited = min(desired, limit)
    else:
        limit = min(start - allowed, current)
        limited = max(desired, limit)
    if limited == desired:
        return desired, None
    per = durations.format_seconds(rate.period)
    return limited, f"at most {allowed} per {per} ({moved} already moved in that window)"


def churn(
    policy: spec.GroupPolicy, current: int, desired: int, changes: Sequence[model.Change], now: float
) -> StageResult:
    """Creates plus removals in the rolling period stay within the group's churn budget."""
    budget = policy.churn_budget
    if budget is None or desired == current:
        return desired, None
    used = sum(abs(c.delta) for c in changes if c.at > now - budget.period)
    left = max(0, budget.max_changes - used)
    if abs(desired - current) <= left:
        return desired, None
    limited = current + left if desired > current else current - left
    per = durations.format_seconds(budget.period)
    return limited, f"{used} of {budget.max_changes} clones and removals per {per} already spent"


def cooldown(
    policy: spec.GroupPolicy, memory: model.GroupMemory, current: int, desired: int, now: float
) -> StageResult:
    """After a change in one direction, wait that direction's cool-down before the next."""
    up = desired > current
    if desired == current:
        return desired, None
    last = memory.last_up_at if up else memory.last_down_at
    wait = (policy.scale_up if up else policy.scale_down).cooldown
    if last is None or now - last >= wait:
        return desired, None
    left = durations.format_seconds(math.ceil(wait - (now - last)))
    return current, f"{'scale-up' if up else 'scale-in'} cooling down for {left} more"


def warmup(inventory: model.GroupInventory, current: int, desired: int) -> StageResult:
    """Members still warming up block scale-in (their load is not known yet); they never block scale-out."""
    if desired >= current:
        return desired, None
    booting = sum(1 for i in inventory.members if i.state is model.InstanceState.BOOTING)
    registering = sum(1 for i in inventory.members if i.state is model.InstanceState.REGISTERING)
    if booting + registering == 0:
        return desired, None
    if registering == 0:
        return current, f"{booting} member(s) still warming up"
    return current, f"{booting} member(s) still warming up, {registering} registering with the load balancers"


def removable(policy: spec.GroupPolicy, inventory: model.GroupInventory, now: float) -> list[model.Instance]:
    """Members that scale-in may remove: not protected, and failed or older than min_lifetime."""
    return [
        i
        for i in inventory.members
        if not i.protected
        and (i.state is model.InstanceState.FAILED or now - i.created_at >= policy.min_lifetime)
    ]


def lifetime(
    policy: spec.GroupPolicy, inventory: model.GroupInventory, desired: int, now: float
) -> StageResult:
    """Scale-in removes only members that may go (min_lifetime, protection)."""
    current = inventory.current
    if desired >= current:
        return desired, None
    eligible = len(removable(policy, inventory, now))
    if current - desired <= eligible:
        return desired, None
    return current - eligible, f"only {eligible} member(s) old enough and unprotected to remove"


def clamp(policy: spec.GroupPolicy, desired: int, bounds: schedule.Bounds) -> StageResult:
    """Within [min, max] again after every other stage, with the schedule's floor winning a conflict."""
    low = max(policy.min, bounds.floor or 0)
    high = min(policy.max, bounds.ceiling if bounds.ceiling is not None else policy.max)
    high = max(high, min(low, policy.max))
    low = min(low, high)
    clamped = min(max(desired, low), high)
    if clamped == desired:
        return desired, None
    return clamped, f"bounds [{low}, {high}]"


def capacity(inventory: model.GroupInventory, current: int, desired: int) -> StageResult:
    """Host headroom clips scale-out: a capacity limit, not an error."""
    if inventory.headroom is None or desired - current <= inventory.headroom:
        return desired, None
    clipped = current + max(inventory.headroom, 0)
    return clipped, f"capacity_limited: hosts fit only {max(inventory.headroom, 0)} more"
