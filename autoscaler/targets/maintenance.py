"""The KVM target's background upkeep: lifecycle events, reconnects, reconciles and load readings.

The cache is only as good as this keeps it: events refresh single domains, a lost connection is
reconnected and its host fully reconciled (events were missed), and a loop runs the readiness
watch, CPU-load and free-memory readings and the periodic full reconcile.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import time

import structlog

from autoscaler import errors
from autoscaler.targets import addresses, registration, resources, scalein, watch
from autoscaler.targets import reconcile as reconciling
from autoscaler.targets.state import KvmState
from autoscaler.virt import events, ops, xml
from autoscaler.virt import gateway as gateways

log = structlog.get_logger(__name__)
RETRY_DELAY_MAX = 10.0
"""Longest pause between two reconcile attempts of a recovering host."""


async def consume_events(state: KvmState) -> None:
    """Apply lifecycle events to the cache; a closed connection starts recovery."""
    while True:
        event = await state.queue.get()
        if isinstance(event, events.ConnectionClosed):
            _connection_lost(state, event.uri)
        elif event.uri in state.gateways:
            state.spawn(_refresh_one(state, event.uri, event.uuid), "libvirt-refresh")


async def _refresh_one(state: KvmState, host: str, uuid: str) -> None:
    """Re-read one domain after an event (under its lock, so a destroy is not undone)."""
    async with state.locks[uuid]:
        read_since = state.cache.stamp()  # a listing begun after this read knows better
        try:
            view = await state.gateways[host].run(ops.get_domain, uuid, op="lookup")
        except gateways.NotFound:
            state.cache.drop(host, uuid, read_since)
            return
        except errors.TargetError:
            return
        for record in reconciling.records_of(host, [view]):
            state.cache.upsert(record, read_since)


def _connection_lost(state: KvmState, host: str) -> None:
    """Mark the host unreconciled and reconnect in the background (once at a time)."""
    state.cache.unreconciled(host)
    state.down_since.setdefault(host, time.monotonic())
    if host in state.recovering:
        return
    state.recovering.add(host)
    state.gateways[host].mark_broken()
    state.spawn(_recover(state, host), "libvirt-reconnect")


async def _recover(state: KvmState, host: str) -> None:
    """Reconnect with back-off, then a full reconcile of that host (events were missed).

    A reconcile that fails on a healthy connection is retried with back-off on the same
    connection: reconnecting would only throw a good connection away (and again, and again).
    """
    try:
        gw = state.gateways[host]
        delay = state.settings.watch_interval
        while True:
            if not gw.connected:
                await gw.reconnect()
            try:
                await _reconcile_host(state, gw)
            except errors.TargetError as exc:
                log.warning("libvirt_recovery_reconcile_failed", host=host, error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_DELAY_MAX, delay * 2)
                continue
            log.info("libvirt_reconnected", host=host)
            _back(state, host)
            return
    finally:
        state.recovering.discard(host)


def _back(state: KvmState, host: str) -> None:
    """A host answers again: its members count once more (a dead host's come back as extras)."""
    state.down_since.pop(host, None)
    if host in state.dead:
        state.dead.discard(host)
        members = sum(1 for r in state.cache.all() if r.host == host)
        log.warning("host_back", host=host, members=members, note="groups above their size shrink again")


def declare_dead(state: KvmState, now: float) -> None:
    """Hosts unreachable longer than host_dead_after: their members now count as gone, so the
    groups replace them on the other hosts (and say so, once per host)."""
    limit = state.settings.host_dead_after
    for host, since in state.down_since.items():
        if host not in state.dead and now - since >= limit:
            state.dead.add(host)
            members = collections.Counter(r.group for r in state.cache.all() if r.host == host)
            log.error(
                "host_declared_dead",
                host=host,
                unreachable_seconds=round(now - since),
                members=dict(members),
                note="its members count as gone and are replaced on the other hosts",
            )


async def maintain(state: KvmState) -> None:
    """Readiness watch, load and memory readings, periodic reconcile, broken-link recovery."""
    settings = state.settings
    due = {
        "stats": 0.0,
        "memory": 0.0,
        "balancers": 0.0,
        "reconcile": time.monotonic() + settings.reconcile_interval,
    }
    while True:
        await asyncio.sleep(settings.watch_interval)
        for host, gw in state.gateways.items():
            if not gw.connected:
                _connection_lost(state, host)
        declare_dead(state, time.monotonic())
        try:
            if state.may_act():  # promotion and parking change domains: the leader's job
                await watch.watch_readiness(state)
                registration.advance_all(state)
                await state.volumes.retry_unfinished()
            await addresses.refresh(state)
            await _periodic(state, due)
        except errors.TargetError as exc:
            log.warning("libvirt_maintenance_failed", error=str(exc), error_class=exc.error_class)


async def _periodic(state: KvmState, due: dict[str, float]) -> None:
    """Run whichever periodic job is due."""
    now = time.monotonic()
    if now >= due["stats"]:
        due["stats"] = now + state.settings.stats_interval
        for group in {r.group for r in state.cache.all()}:
            await refresh_load(state, group)
    if now >= due["balancers"]:
        due["balancers"] = now + state.settings.balancer_interval
        registration.reconcile_all(state)
    if now >= due["memory"]:
        due["memory"] = now + state.settings.memory_interval
        await resources.refresh_memory(state)
    if now >= due["reconcile"] or (state.reconcile_wanted.is_set() and state.cache.ready):
        due["reconcile"] = now + state.settings.reconcile_interval
        state.reconcile_wanted.clear()
        await reconcile(state)


async def refresh_load(state: KvmState, group: str) -> float | None:
    """Read CPU time of the group's ready, running members now; returns when the oldest of their
    loads was computed, or None while none is known. A paused or stopped member gives no reading,
    so it must not hold the group's reading time back, nor lend the group its last (old) load."""
    active = [r for r in state.cache.group(group) if r.owner.phase is xml.Phase.ACTIVE]
    for idle in (r for r in active if r.run != "running"):
        idle.load = idle.load_at = None
        state.cpu.pop(idle.uuid, None)  # a rate across the pause would average it in
    members = [r for r in active if r.run == "running"]
    for host in state.gateways:
        uuids = [r.uuid for r in members if r.host == host]
        if uuids and state.gateways[host].connected:
            readings = await state.gateways[host].run(ops.cpu_times, uuids, op="stats")
            _apply_readings(state, host, readings)
    current = (state.cache.get(r.host, r.uuid) for r in members)
    computed = [r.load_at for r in current if r is not None and r.load_at is not None]
    return min(computed, default=None)


def _apply_readings(state: KvmState, host: str, readings: dict[str, tuple[int, int, float]]) -> None:
    """Turn CPU-time readings into a 0..1 load on each record, over at least `min_cpu_window`.

    A reading too close to its baseline (the stats loop and a query, or two groups' queries, a
    few milliseconds apart) would measure noise: it is dropped, and the baseline and the last
    load stay.
    """
    for uuid, (cpu_ns, vcpus, at) in readings.items():
        baseline = state.cpu.get(uuid)
        record = state.cache.get(host, uuid)
        if baseline is None or record is None:
            state.cpu[uuid] = (cpu_ns, vcpus, at)
            continue
        elapsed = at - baseline[2]
        if elapsed <= 0 or elapsed < state.settings.min_cpu_window:
            continue
        used = (cpu_ns - baseline[0]) / 1e9 / elapsed / max(1, vcpus)
        record.load = min(1.0, max(0.0, used))
        record.load_at = state.clock()
        state.cpu[uuid] = (cpu_ns, vcpus, at)


async def reconcile(state: KvmState, grace: reconciling.Grace | None = None) -> list[reconciling.Report]:
    """One full reconcile of every connected host; raises the first host's error after all had their turn.

    Each host is reconciled on its own, so a failure on one never leaves the others stale.
    """
    reports = []
    failure: errors.TargetError | None = None
    for gw in state.gateways.values():
        if not gw.connected:
            continue
        try:
            reports.append(await _reconcile_host(state, gw, grace))
        except errors.TargetError as exc:
            log.warning("reconcile_host_failed", host=gw.uri, error=str(exc), error_class=exc.error_class)
            failure = failure or exc
    if failure is not None:
        raise failure
    return reports


async def _reconcile_host(
    state: KvmState, gw: gateways.Gateway, grace: reconciling.Grace | None = None
) -> reconciling.Report:
    """Reconcile one host, log what had to be repaired, and ask for the pools to be refilled."""
    pools = {p.pool for p in state.policies.values()} | set(state.settings.sweep_pools)
    report = await reconciling.reconcile_host(
        gw,
        state.cache,
        busy=state.busy,
        policies=state.policies,
        pools=pools,
        grace=grace or state.settings.grace,
        now=state.clock(),
        remove=functools.partial(scalein.remove, state),
        volumes=state.volumes,
        repair=state.may_act(),
    )
    if report.repaired or report.failed_removals:
        log.info("reconcile_repaired", host=gw.uri, **dataclasses.asdict(report))
    if report.lookalikes:
        log.info("reconcile_lookalikes_left_alone", host=gw.uri, volumes=report.lookalikes)
    state.observer.lookalike_volumes(gw.uri, len(report.lookalikes))
    state.refill_wanted.set()
    return report
