"""Crash recovery: compare what libvirt holds with what a finished operation would leave, and fix it.

Runs at start, after every reconnect and periodically. It refills the cache from a full listing,
finishes interrupted deletions (phase=draining), rolls back clones stuck in phase=creating, and
deletes overlays that are provably ours (our name pattern with a full UUID, in a pool we use,
with a backing store) whose domain is gone. Domains without our metadata are never touched, and
members of groups without a policy here are only listed (counted as unmanaged), never changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field

from autoscaler.policy import spec
from autoscaler.targets.inventory import RUNNING, Cache, Record
from autoscaler.virt import gateway, ops, xml


@dataclass(frozen=True, slots=True)
class Grace:
    """How long half-done work may wait before the reconciler treats it as abandoned."""

    creating_stopped: float = 120.0
    """A phase=creating domain that is not running (crash between define and start)."""
    creating_running: float = 900.0
    """A running phase=creating domain never ready, when its group has no policy."""
    overlay: float = 300.0
    """An overlay of ours with no domain (crash between overlay and define)."""


@dataclass(slots=True)
class Report:
    """What one reconcile of one host found and did."""

    adopted: int = 0
    finished_deletes: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    orphan_overlays: list[str] = field(default_factory=list)


Remove = Callable[[Record, str | None], Awaitable[None]]


def records_of(host: str, views: list[ops.DomainView]) -> list[Record]:
    """Our domains among a host's listing (metadata in our namespace, well-formed)."""
    records = []
    for view in views:
        owner = xml.parse_metadata(view.metadata) if view.metadata else None
        if owner is not None:
            records.append(Record(view.uuid, view.name, host, owner, view.run, view.memory))
    return records


def abandoned(record: Record, now: float, policy: spec.GroupPolicy | None, grace: Grace) -> bool:
    """True for a phase=creating domain that no live clone will finish."""
    if record.owner.phase is not xml.Phase.CREATING:
        return False
    age = now - record.owner.created
    if record.run not in RUNNING:
        return age > grace.creating_stopped
    limit = policy.readiness.timeout if policy is not None else grace.creating_running
    return age > limit


async def reconcile_host(
    gw: gateway.Gateway,
    cache: Cache,
    *,
    busy: Collection[str],
    policies: Mapping[str, spec.GroupPolicy],
    pools: Collection[str],
    grace: Grace,
    now: float,
    remove: Remove,
) -> Report:
    """One full pass over one host; `busy` holds UUIDs this process is working on right now."""
    views = await gw.run(ops.list_domains, op="list")
    records = records_of(gw.uri, views)
    cache.replace_host(gw.uri, records)
    report = Report(adopted=len(records))
    for record in records:
        policy = policies.get(record.group)
        if record.uuid in busy or policy is None:
            continue
        pool = policy.pool
        if record.owner.phase is xml.Phase.DRAINING:
            await remove(record, pool)
            report.finished_deletes.append(record.name)
        elif abandoned(record, now, policy, grace):
            await remove(record, pool)
            report.rolled_back.append(record.name)
    known = {view.uuid for view in views} | set(busy)
    report.orphan_overlays = await _sweep_overlays(gw, pools, known, set(policies), now, grace.overlay)
    return report


async def _sweep_overlays(
    gw: gateway.Gateway, pools: Collection[str], known: set[str], groups: set[str], now: float, grace: float
) -> list[str]:
    """Delete overlays of ours whose domain no longer exists; returns their names."""
    deleted = []
    for pool in sorted(pools):
        try:
            volumes = await gw.run(ops.list_volumes, pool, op="vol_list")
        except gateway.NotFound:
            continue
        for volume in volumes:
            if _orphan(volume, known, groups, now, grace):
                await gw.run(ops.delete_volume_by_path, volume.path, op="vol_delete")
                deleted.append(volume.name)
    return deleted


def _orphan(volume: ops.VolumeView, known: set[str], groups: set[str], now: float, grace: float) -> bool:
    """Provably ours, of a governed group, its domain gone, and too old to be a clone in progress."""
    match = xml.OVERLAY_NAME.match(volume.name)
    if match is None or match.group("uuid") in known or match.group("group") not in groups:
        return False
    if xml.volume_backing_path(volume.xml) is None:
        return False
    created = xml.volume_ctime(volume.xml)
    return created is None or now - created > grace
