"""Registration: a member ready by its probe becomes capacity only once every balancer confirmed it.

After its probe passes, a member of a served group is `registering` (persisted, with the time it
began). Each step learns its address, runs the launching hooks (once each, recorded in the
metadata), and asks every balancer to register it (staged until the balancer's own check passes).
When all confirm, it becomes active. A balancer that does not answer is asked again with back-off;
past `launch_timeout` the member is marked failed, and the engine replaces it (it never served).
An abandoning hook fails it at once.

Every `balancer_interval` the balancers are reconciled too: active members missing from one (an
HAProxy reload drops dynamic servers) are registered again, and our servers whose domain is gone
are taken out.
"""

from __future__ import annotations

import asyncio
import dataclasses

import structlog

from autoscaler import errors
from autoscaler.serving import Balancer, Member, hooks
from autoscaler.targets import balancing, lifecycle
from autoscaler.targets import inventory as membership
from autoscaler.targets.state import KvmState
from autoscaler.virt import xml

log = structlog.get_logger(__name__)


async def verify(state: KvmState, group: str) -> None:
    """Check each balancer of a served group once (before its first clone); errors are raised."""
    served = state.served.get(group)
    if served is None or served.verified:
        return
    for balancer in served.balancers:
        try:
            await balancer.verify()
        except errors.BalancerError as exc:
            state.observer.balancer_failed(group, "verify", exc.error_class)
            raise
    served.verified = True


def verify_all(state: KvmState) -> None:
    """Check every served group's balancers in the background (at start and on a policy change),
    so a missing backend is logged at once; a scale-out checks again and fails with the reason."""
    for group, served in state.served.items():
        if not served.verified:
            state.spawn(_verify_logged(state, group), f"balancer-verify:{group}")


async def _verify_logged(state: KvmState, group: str) -> None:
    try:
        await verify(state, group)
    except errors.BalancerError as exc:
        log.error("balancer_unusable", group=group, error=str(exc), error_class=exc.error_class)


def advance_all(state: KvmState) -> None:
    """Start a registration step for every registering member that is due and idle."""
    for record in state.cache.all():
        served = state.served.get(record.group)
        if served is None or not _due(state, record):
            continue
        state.registering.add(record.uuid)
        state.spawn(_step(state, record, served), "registration")


def _due(state: KvmState, record: membership.Record) -> bool:
    if record.owner.phase is not xml.Phase.REGISTERING or record.failed:
        return False
    if record.uuid in state.busy or record.uuid in state.registering or record.run != "running":
        return False
    retry = state.retries.get(record.uuid)
    return retry is None or retry.due


async def _step(state: KvmState, record: membership.Record, served: balancing.Served) -> None:
    """One attempt: activate when every balancer confirmed; fail past launch_timeout."""
    try:
        if await _attempt(state, record, served):
            await _activate(state, record)
            return
        began = record.owner.since or record.owner.created
        if not record.failed and state.clock() - began > served.config.launch_timeout:
            note = f"not confirmed by every load balancer within launch_timeout ({record.note})"
            balancing.mark(state.cache, record, note, failed=True)
            log.warning("registration_timed_out", vm=record.name, group=record.group, note=record.note)
    finally:
        state.registering.discard(record.uuid)


async def _attempt(state: KvmState, record: membership.Record, served: balancing.Served) -> bool:
    """Address, hooks, balancers; True once all confirmed. Errors are noted and retried later."""
    retry = state.retries.setdefault(record.uuid, balancing.Retry())
    try:
        if not await _learn_address(state, record):
            balancing.mark(state.cache, record, "waiting for the guest's address")
            retry.failed(served.config.retry_interval)
            return False
        if await _launch_hooks(state, record, served) == hooks.ABANDON:
            balancing.mark(state.cache, record, failed=True)
            return False
        await verify(state, record.group)
        waiting = await _register(record, served)
    except errors.BalancerError as exc:
        state.observer.balancer_failed(record.group, "register", exc.error_class)
        balancing.mark(state.cache, record, f"{exc.error_class}: {exc}")
        log.warning("registration_failed", vm=record.name, group=record.group, error=str(exc))
        retry.failed(served.config.retry_interval)
        return False
    except errors.TargetError as exc:
        balancing.mark(state.cache, record, f"{exc.error_class}: {exc}")
        retry.failed(served.config.retry_interval)
        return False
    if waiting:
        balancing.mark(state.cache, record, "waiting for the health check of " + ", ".join(waiting))
        return False
    return True


async def _register(record: membership.Record, served: balancing.Served) -> list[str]:
    """Register with every balancer; the labels of those that have not confirmed yet."""
    member = balancing.member(record, served.config)
    results = await asyncio.gather(*(b.register(member) for b in served.balancers))
    return [b.label for b, ok in zip(served.balancers, results, strict=True) if not ok]


async def _learn_address(state: KvmState, record: membership.Record) -> bool:
    """The member's address, found once and kept in its metadata; False while it has none."""
    if record.owner.address:
        return True
    address = await state.address_of(record)
    if not address:
        return False
    return await persist(state, record, dataclasses.replace(record.owner, address=address))


async def _launch_hooks(state: KvmState, record: membership.Record, served: balancing.Served) -> str:
    """Run the launching hooks not yet done; ABANDON as soon as one abandons."""
    for hook in (h for h in served.config.hooks if h.event == "launching"):
        done = f"launching:{hook.name}"
        abandoned = f"{done}:abandon"
        if abandoned in record.owner.hooks:  # decided before a restart: not asked twice
            balancing.mark(state.cache, record, f"abandoned by hook {hook.name}")
            return hooks.ABANDON
        if done in record.owner.hooks:
            continue
        outcome = await hooks.run(hook, balancing.event("launching", record, served.config))
        state.observer.hook_ran(record.group, "launching", outcome.result, outcome.how)
        log.info("hook_ran", vm=record.name, hook=hook.name, result=outcome.result, how=outcome.how)
        key = abandoned if outcome.result == hooks.ABANDON else done
        await persist(state, record, dataclasses.replace(record.owner, hooks=(*record.owner.hooks, key)))
        if outcome.result == hooks.ABANDON:
            note = f"abandoned by hook {hook.name} ({outcome.how}) {outcome.detail}".strip()
            balancing.mark(state.cache, record, note)
            return hooks.ABANDON
    return hooks.CONTINUE


async def persist(
    state: KvmState, record: membership.Record, owner: xml.Ownership, phase: xml.Phase | None = None
) -> bool:
    """Write new metadata in libvirt, then the cache, if the domain is still in `phase` (default:
    the new owner's), i.e. nothing else moved it on meanwhile."""
    async with state.locks[record.uuid]:
        current = state.cache.get(record.host, record.uuid)
        if current is None or current.owner.phase is not (phase or owner.phase):
            return False
        await lifecycle.set_phase(state.gateways[record.host], record.uuid, owner)
        record.owner = current.owner = owner
        state.cache.upsert(current)
    return True


async def _activate(state: KvmState, record: membership.Record) -> None:
    """Every balancer confirmed: the member counts as capacity from now on."""
    now = state.stamp()
    owner = record.owner.with_phase(xml.Phase.ACTIVE, ready=now)
    if await persist(state, record, owner, phase=xml.Phase.REGISTERING):
        balancing.mark(state.cache, record, "")
        state.retries.pop(record.uuid, None)
        state.observer.provisioned(record.group, "ready", max(0.0, now - record.owner.created))
        log.info("member_serving", vm=record.name, group=record.group)


def reconcile_all(state: KvmState) -> None:
    """Start a reconcile of every served group's balancers (one at a time per group).

    Only while the cache is complete: a server is a stray only if no domain of ours has it.
    """
    if not state.cache.ready:
        return
    for group, served in state.served.items():
        name = f"balancer-reconcile:{group}"
        if name not in {t.get_name() for t in state.tasks}:
            state.spawn(reconcile(state, group, served), name)


async def _give_back(balancer: Balancer, served: balancing.Served, active: list[Member]) -> None:
    """Register again, staged as new ones are, the active members the balancer does not hold.

    Servers it holds in any state are left alone (an operator's MAINT stays), except the ones
    being given back, which are asked again until their check passed.
    """
    lost = {m.uuid for m in await balancer.missing(active)}
    for member in active:
        key = (balancer.label, member.uuid)
        if member.uuid not in lost and key not in served.readding:
            continue
        if member.uuid in lost:
            log.warning("member_registered_again", vm=member.name, balancer=balancer.label)
        if await balancer.register(member):
            served.readding.discard(key)
        else:
            served.readding.add(key)


async def reconcile(state: KvmState, group: str, served: balancing.Served) -> None:
    """Re-register active members a balancer lost; take out our servers whose domain is gone."""
    records = [r for r in state.cache.group(group) if r.owner.address]
    live = [balancing.member(r, served.config) for r in records if r.owner.phase is not xml.Phase.POOLED]
    active = [r for r in records if r.owner.phase is xml.Phase.ACTIVE and r.uuid not in state.busy]
    for balancer in served.balancers:
        try:
            await _give_back(balancer, served, [balancing.member(r, served.config) for r in active])
            removed = await balancer.prune(live)
        except errors.BalancerError as exc:
            state.observer.balancer_failed(group, "reconcile", exc.error_class)
            log.warning("balancer_reconcile_failed", group=group, balancer=balancer.label, error=str(exc))
            continue
        if removed:
            log.warning("balancer_strays_removed", group=group, balancer=balancer.label, servers=removed)
