"""The readiness watch: probing booting (and some active) domains and acting on what it finds.

A booting member becomes active in libvirt first, then in the cache, and its clone-to-ready time
is measured; an active one that keeps failing is marked failed; a booting pooled domain is parked
once ready (paused, or shut down after its first boot). `readiness` holds the probes themselves.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time

import structlog

from autoscaler import errors
from autoscaler.policy import spec
from autoscaler.targets import inventory as membership
from autoscaler.targets import lifecycle, readiness, warmpool
from autoscaler.targets.state import KvmState
from autoscaler.virt import xml

log = structlog.get_logger(__name__)


async def watch_readiness(state: KvmState) -> None:
    """Probe the members that are due, all at once."""
    jobs = [_probe(state, r, p) for r in state.cache.all() if (p := _probe_due(state, r)) is not None]
    await asyncio.gather(*jobs)


def _probe_due(state: KvmState, record: membership.Record) -> spec.GroupPolicy | None:
    """The policy to probe this record with now, or None when no probe is due."""
    policy = state.policies.get(record.group)
    if policy is None or record.uuid in state.busy or record.failed or record.run not in membership.RUNNING:
        return None
    phase = record.owner.phase
    if phase is xml.Phase.DRAINING or not _probed_in(phase, record.run, policy):
        return None
    if phase is not xml.Phase.ACTIVE and state.clock() - record.owner.created < policy.warmup:
        return None
    if time.monotonic() - record.last_probe < policy.readiness.interval:
        return None
    return policy


async def _probe(state: KvmState, record: membership.Record, policy: spec.GroupPolicy) -> None:
    """One probe; promotes a booting member to active, or counts a failure."""
    record.last_probe = time.monotonic()
    ok = await readiness.probe(state.gateways[record.host], record.uuid, policy.readiness)
    if record.owner.phase is xml.Phase.POOLED:
        await _settle_pooled(state, record, policy, ok)
        return
    if record.owner.phase is xml.Phase.CREATING:
        if ok and record.group in state.served:
            await _to_registering(state, record)
        elif ok:
            await _promote(state, record)
        elif state.clock() - record.owner.created > policy.readiness.timeout:
            record.failed = True
        return
    record.probe_failures = 0 if ok else record.probe_failures + 1
    record.failed = record.probe_failures >= policy.readiness.failures


async def _to_registering(state: KvmState, record: membership.Record) -> None:
    """A served group's member passed its probe: it joins the balancers before it counts."""
    async with state.locks[record.uuid]:
        current = state.cache.get(record.host, record.uuid)
        if current is None or current.owner.phase is not xml.Phase.CREATING:
            return
        owner = current.owner.with_phase(xml.Phase.REGISTERING, since=state.stamp())
        await lifecycle.set_phase(state.gateways[record.host], record.uuid, owner)
        record.owner = current.owner = owner
        state.cache.upsert(current)


async def _promote(state: KvmState, record: membership.Record) -> None:
    """phase=active in libvirt first, then in the cache; measure clone-to-ready."""
    now = state.stamp()
    async with state.locks[record.uuid]:
        current = state.cache.get(record.host, record.uuid)
        if current is None or current.owner.phase is not xml.Phase.CREATING:
            return  # removed (or being removed) while it was probed: nothing to promote
        owner = current.owner.with_phase(xml.Phase.ACTIVE, ready=now)
        await lifecycle.set_phase(state.gateways[record.host], record.uuid, owner)
        record.owner = current.owner = owner
        state.cache.upsert(current)  # stamped, so a listing read before it cannot undo it
    seconds = max(0.0, now - owner.created)
    window = state.provision.setdefault(
        record.group, collections.deque(maxlen=state.settings.provision_window)
    )
    window.append(seconds)
    state.observer.provisioned(record.group, "ready", seconds)


async def _settle_pooled(
    state: KvmState, record: membership.Record, policy: spec.GroupPolicy, ok: bool
) -> None:
    """A booting pooled domain: park it once ready (paused, or shut down after its first boot),
    mark it failed if it never is. A shut-down runs in the background: it can take a while."""
    if not ok:
        record.failed = state.clock() - record.owner.created > policy.readiness.timeout
        return
    if record.uuid in state.busy:
        return  # being taken by a scale-out: it is a member now, never parked by us
    state.busy.add(record.uuid)  # no take and no second park while this one runs
    if policy.warm_pool.state == "paused":
        await _park(state, record, policy)
    else:
        state.spawn(_park(state, record, policy), "warm-pool-park")


async def _park(state: KvmState, record: membership.Record, policy: spec.GroupPolicy) -> None:
    """Park a pooled domain the caller marked busy; the mark is lifted whatever happens."""
    try:
        async with state.locks[record.uuid]:
            now = state.cache.get(record.host, record.uuid)
            if now is None or now.owner.phase is not xml.Phase.POOLED:
                return  # removed meanwhile
            await warmpool.park(state.gateways[record.host], now, policy, state.settings.stop)
            state.cache.upsert(now)  # stamped, as for a promotion
    except errors.TargetError as exc:
        log.warning("warm_pool_park_failed", vm=record.name, error=str(exc), error_class=exc.error_class)
    finally:
        state.busy.discard(record.uuid)


def _probed_in(phase: xml.Phase, run: str, policy: spec.GroupPolicy) -> bool:
    """Whether a domain in this phase and run state is probed at all.

    Booting members are; active ones only by probes that detect failure (tcp, guest agent);
    pooled ones only while they boot before they wait; a paused member is a take cut short.
    """
    if phase is xml.Phase.ACTIVE:
        return policy.readiness.probe in ("tcp", "guest_agent")
    if phase is xml.Phase.POOLED:
        return warmpool.boots_first(policy) and run == "running"
    return run == "running"


def provision_seconds(state: KvmState, group: str) -> float | None:
    """The p90 of recent clone-to-ready durations of the group, None before the first one."""
    samples = sorted(state.provision.get(group, ()))
    if not samples:
        return None
    return samples[max(0, math.ceil(0.9 * len(samples)) - 1)]
