"""The warm pool: pre-cloned domains that wait shut off or paused, so a scale-out starts or resumes one
instead of cloning and booting from nothing.

A pooled domain is ours (phase=pooled in its metadata, so a crash loses nothing), is counted per
group, and is never part of the group's size nor a scale-in victim. Its `generation` holds the
fingerprint of what shapes a clone (golden image, template, pool, how it waits), so a pooled domain
made under another shape is stale and removed, while edits to thresholds or sizes keep the pool.
This module holds the pure rules (usable, taken, surplus) and the short sequences that take a
domain out of the pool or park a freshly booted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, MutableMapping

from autoscaler.policy import spec
from autoscaler.targets import lifecycle, placement
from autoscaler.targets.inventory import Record
from autoscaler.virt import gateway, ops, xml

USABLE_RUN = frozenset({"shutoff", "paused", "running"})
"""Run states from which a pooled domain can still become a member."""


def fingerprint(policy: spec.GroupPolicy) -> str:
    """What makes a clone of the group: golden image, template, pool and how pooled domains wait."""
    pool = policy.warm_pool
    waits = pool.state + ("+boot_once" if pool.boot_once and pool.state == "shutoff" else "")
    shape = "\0".join((policy.golden, policy.template, policy.pool, waits))
    return "pool-" + hashlib.sha256(shape.encode()).hexdigest()[:12]


def current(record: Record, policy: spec.GroupPolicy) -> bool:
    """Made from the group's golden image under the group's current clone shape."""
    return record.owner.golden == policy.golden and record.owner.generation == fingerprint(policy)


def usable(record: Record, policy: spec.GroupPolicy) -> bool:
    """Current, not broken, and in a run state a scale-out can start or resume."""
    return current(record, policy) and record.run in USABLE_RUN and not record.failed


def boots_first(policy: spec.GroupPolicy) -> bool:
    """Whether a new pooled domain boots (and is probed) before it waits: paused or boot-once pools."""
    return policy.warm_pool.state == "paused" or policy.warm_pool.boot_once


def holds_memory(record: Record) -> bool:
    """Paused (or still booting) pooled domains keep their memory; shut-off ones do not."""
    return record.run in ("paused", "running")


def parked(record: Record, policy: spec.GroupPolicy) -> bool:
    """Waiting the way the policy asks (paused or shut off), not still on its way there."""
    wanted = "paused" if policy.warm_pool.state == "paused" else "shutoff"
    return record.run == wanted


def deficit(pooled: Iterable[Record], policy: spec.GroupPolicy) -> int:
    """How many pooled domains the group lacks."""
    return max(0, policy.warm_pool.size - sum(1 for r in pooled if usable(r, policy)))


def surplus(pooled: Iterable[Record], policy: spec.GroupPolicy) -> list[Record]:
    """Pooled domains to remove: stale or broken ones, then those beyond the size (keeping parked, old)."""
    records = list(pooled)
    keepers = sorted(
        (r for r in records if usable(r, policy)),
        key=lambda r: (not parked(r, policy), r.owner.created, r.name),
    )
    kept = {r.uuid for r in keepers[: policy.warm_pool.size]}
    return [r for r in records if r.uuid not in kept]


def choose(
    pooled: Iterable[Record],
    policy: spec.GroupPolicy,
    count: int,
    free: MutableMapping[str, int],
    size: int,
    reserve: int,
) -> list[Record]:
    """Up to `count` pooled domains for a scale-out: those holding memory first, then shut-off ones.

    A shut-off domain is taken only when its host can still start it (free memory minus the
    reserve); `free` is debited for each one taken, so the caller places the rest on what is left.
    """
    candidates = sorted(
        (r for r in pooled if usable(r, policy)), key=lambda r: (not holds_memory(r), r.owner.created, r.name)
    )
    taken: list[Record] = []
    for record in candidates:
        if len(taken) == count:
            break
        if not holds_memory(record):
            if placement.fits(free.get(record.host, 0), size, reserve) == 0:
                continue
            free[record.host] -= size
        taken.append(record)
    return taken


def joining(record: Record, policy: spec.GroupPolicy, revision: str, now: float) -> xml.Ownership:
    """The ownership of a pooled domain as it joins the group: creating, requested now."""
    return dataclasses.replace(
        record.owner, phase=xml.Phase.CREATING, created=now, generation=revision, golden=policy.golden
    )


async def take(gw: gateway.Gateway, record: Record, owner: xml.Ownership) -> None:
    """Out of the pool: phase=creating first (a crash then rolls it back), then resume or start it."""
    await lifecycle.set_phase(gw, record.uuid, owner)
    record.owner = owner
    await gw.run(ops.start_paused, record.uuid, op="start")
    record.run = await gw.run(ops.run_state, record.uuid, op="state")


async def park(
    gw: gateway.Gateway, record: Record, policy: spec.GroupPolicy, stop: lifecycle.StopTimings
) -> None:
    """Put a pooled domain that has booted to rest: paused (a scale-out resumes a ready guest), or
    shut down after its first boot (a scale-out starts a guest whose first-boot work is done)."""
    if policy.warm_pool.state == "paused":
        await gw.run(ops.suspend, record.uuid, op="suspend")
        record.run = "paused"
        return
    await lifecycle.stop(gw, record.uuid, stop)
    record.run = "shutoff"
