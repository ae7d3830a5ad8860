"""Crash recovery: compare what libvirt holds with what a finished operation would leave, and fix it.

Runs at start, after every reconnect and periodically. It refills the cache from a full listing,
finishes interrupted deletions (phase=draining), rolls back clones stuck in phase=creating,
destroys our domains whose overlay file is gone, trims each warm pool to its size and current
clone shape, and deletes volumes (overlays, cloud-init seeds) whose domain is gone that are
provably ours: the ownership ledger recorded creating them, and no domain on any connected host
uses them as a disk (a name proves nothing). Volumes named like ours that fail that test are
reported as look-alikes and left alone. Domains without our metadata are never touched, and
domains of groups without a policy here are only counted (unmanaged), never changed.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field

import structlog

from autoscaler import errors
from autoscaler.policy import spec
from autoscaler.targets import ownership, warmpool
from autoscaler.targets.inventory import Cache, Record
from autoscaler.targets.volumes import Volumes
from autoscaler.virt import gateway, ops, xml

log = structlog.get_logger(__name__)


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
    """Volumes of ours deleted because their domain is gone (overlays, seeds, ...)."""
    lookalikes: list[str] = field(default_factory=list)
    """Volumes named like ours but not provably ours, or ours but used by some domain: left alone."""
    missing_overlay: list[str] = field(default_factory=list)
    """Our domains destroyed because their overlay file was gone."""
    pool_trimmed: list[str] = field(default_factory=list)
    finished_clones: list[str] = field(default_factory=list)
    """Clones defined but never started (their maker died in between) that this pass started."""
    """Pooled domains removed: stale (other golden image or clone shape), broken, or beyond the size."""
    unmanaged: dict[str, int] = field(default_factory=dict)
    """Our domains per group that has no policy here (left alone)."""
    failed_removals: list[str] = field(default_factory=list)
    """Domains this pass had to remove but could not (logged; the next pass tries again)."""

    @property
    def repaired(self) -> bool:
        """True when this pass had to change anything."""
        return bool(
            self.finished_deletes
            or self.rolled_back
            or self.orphan_overlays
            or self.missing_overlay
            or self.pool_trimmed
            or self.finished_clones
        )


Remove = Callable[[Record, str | None, Collection[xml.Phase]], Awaitable[bool]]
"""Removes a domain from its pool if it is still idle in one of the given phases; True when removed."""
ANY_PHASE = frozenset(xml.Phase)
"""For a removal decided on something the phase does not change (an overlay that is gone)."""


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
    if record.run != "running":  # paused too: a take from the warm pool cut short before its resume
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
    volumes: Volumes,
    repair: bool = True,
) -> Report:
    """One full pass over one host; `busy` holds UUIDs this process is working on right now.

    Without `repair` (a standby daemon) the pass only refreshes the cache and counts.
    """
    since = cache.listing_started(gw.uri)
    try:
        views = await gw.run(ops.list_domains, op="list")
    except BaseException:
        cache.listing_abandoned(gw.uri, since)
        raise
    records = records_of(gw.uri, views)
    cache.replace_host(gw.uri, records, since)
    report = Report(adopted=len(records))
    governed = [r for r in records if r.uuid not in busy and r.group in policies]
    report.unmanaged = dict(collections.Counter(r.group for r in records if r.group not in policies))
    if not repair:
        return report
    await _finish_or_roll_back(governed, policies, grace, now, remove, report)
    await _finish_clones(gw, cache, governed, policies, grace, now, report)
    await _destroy_missing_overlays(gw, governed, policies, remove, report)
    await _trim_pools(gw.uri, cache, busy, policies, remove, report)
    if cache.ready:
        known = {view.uuid for view in views} | {r.uuid for r in cache.all()} | set(busy)
        sweep = _Sweep(gw, volumes, known, now, grace.overlay, report)
        for pool in sorted(pools):
            await sweep.pool(pool)
    return report


async def _finish_or_roll_back(
    records: list[Record],
    policies: Mapping[str, spec.GroupPolicy],
    grace: Grace,
    now: float,
    remove: Remove,
    report: Report,
) -> None:
    """Finish interrupted deletions and roll back abandoned clones."""
    for record in records:
        policy = policies[record.group]
        if record.owner.phase is xml.Phase.DRAINING:
            done = report.finished_deletes
        elif abandoned(record, now, policy, grace):
            done = report.rolled_back
        else:
            continue
        if await _removed(remove, record, policy.pool, report, {record.owner.phase}):
            done.append(record.name)


async def _finish_clones(
    gw: gateway.Gateway,
    cache: Cache,
    records: list[Record],
    policies: Mapping[str, spec.GroupPolicy],
    grace: Grace,
    now: float,
    report: Report,
) -> None:
    """Start clones whose maker died between define and start (a crash, or a leader that was
    killed): the decision that made them stands, so finishing them beats a second clone."""
    for record in records:
        interrupted = record.owner.phase is xml.Phase.CREATING and record.run == "shutoff"
        if not interrupted or abandoned(record, now, policies[record.group], grace):
            continue
        try:
            await gw.run(ops.start, record.uuid, op="start")
        except gateway.ConnectionLost:
            raise
        except errors.TargetError as exc:
            log.warning("reconcile_start_failed", host=record.host, vm=record.name, error=str(exc))
            continue
        record.run = "running"
        cache.upsert(record)
        report.finished_clones.append(record.name)


async def _removed(
    remove: Remove, record: Record, pool: str | None, report: Report, phases: Collection[xml.Phase]
) -> bool:
    """Remove one domain if it is still idle in one of `phases`; True when done.

    A failure is logged and counted, and the pass goes on: one domain that cannot be removed
    must not keep the rest of the host unreconciled. Only a lost connection ends the pass
    (nothing more can be done on that host now).
    """
    try:
        removed = await remove(record, pool, phases)
    except gateway.ConnectionLost:
        raise
    except errors.TargetError as exc:
        log.warning(
            "reconcile_remove_failed",
            host=record.host,
            vm=record.name,
            group=record.group,
            error=str(exc),
            error_class=exc.error_class,
        )
        report.failed_removals.append(record.name)
        return False
    return removed


async def _destroy_missing_overlays(
    gw: gateway.Gateway,
    records: list[Record],
    policies: Mapping[str, spec.GroupPolicy],
    remove: Remove,
    report: Report,
) -> None:
    """Destroy and undefine our domains whose overlay is provably gone, and say so loudly."""
    handled = set(report.finished_deletes) | set(report.rolled_back) | set(report.failed_removals)
    wanted = [
        (r.uuid, xml.overlay_name(r.group, r.uuid))
        for r in records
        if r.name not in handled and r.owner.phase is not xml.Phase.DRAINING
    ]
    if not wanted:
        return
    missing = set(await gw.run(ops.missing_overlays, wanted, op="overlay_check"))
    for record in (r for r in records if r.uuid in missing):
        log.error("reconcile_overlay_missing", host=gw.uri, vm=record.name, group=record.group)
        if await _removed(remove, record, policies[record.group].pool, report, ANY_PHASE):
            report.missing_overlay.append(record.name)


async def _trim_pools(
    host: str,
    cache: Cache,
    busy: Collection[str],
    policies: Mapping[str, spec.GroupPolicy],
    remove: Remove,
    report: Report,
) -> None:
    """Remove this host's pooled domains that are stale, broken or beyond the group's pool size.

    The size counts every host's pooled domains, so each host's pass removes its share of one
    consistent choice; pooled domains being filled or taken right now are left out.
    """
    for group, policy in policies.items():
        idle = [r for r in cache.pooled(group) if r.uuid not in busy]
        for record in warmpool.surplus(idle, policy):
            mine = record.host == host and cache.get(host, record.uuid) is record
            if mine and await _removed(remove, record, policy.pool, report, {xml.Phase.POOLED}):
                report.pool_trimmed.append(record.name)


class _Sweep:
    """Deletes volumes of ours whose domain is gone; runs once every host's domains are listed.

    A storage pool may be shared by several hosts (NFS): a volume in it may belong to a domain
    on another host, so the sweep waits until every host's domains are in the cache (`known`).
    Domains cloned after this host's listing began are in the cache (or busy), not in the
    listing. A volume is deleted only when the ledger recorded creating it through this host,
    its domain is known nowhere, its intent is older than the grace, and no domain on any
    connected host uses it. Intents whose volume never appeared (a crash before the creation)
    are pruned after the same grace.
    """

    def __init__(
        self, gw: gateway.Gateway, volumes: Volumes, known: set[str], now: float, grace: float, report: Report
    ) -> None:
        self.gw, self.volumes, self.known = gw, volumes, known
        self.now, self.grace, self.report = now, grace, report
        self._references: ops.DiskReferences | None = None

    async def pool(self, pool: str) -> None:
        """Sweep one pool, then prune the intents of volumes it does not hold."""
        try:
            listed = await self.gw.run(ops.list_volumes, pool, op="vol_list")
        except gateway.ConnectionLost:
            raise
        except errors.TargetError as exc:  # pool missing or stopped: nothing to sweep there now
            log.info("reconcile_pool_skipped", host=self.gw.uri, pool=pool, error=str(exc))
            return
        for volume in listed:
            await self._volume(pool, volume)
        present = {volume.name for volume in listed}
        for intent in await self.volumes.ledger.entries(self.gw.uri):
            if intent.pool == pool and intent.name not in present and self._abandoned(intent):
                await self.volumes.ledger.forget(intent.host, intent.pool, intent.name)

    async def _volume(self, pool: str, volume: ops.VolumeView) -> None:
        intent = await self.volumes.ledger.owns(self.gw.uri, pool, volume.name)
        if intent is None:
            if xml.OVERLAY_NAME.match(volume.name) or xml.SEED_NAME.match(volume.name):
                self.report.lookalikes.append(volume.name)
            return
        if not self._abandoned(intent):
            return
        if self._references is None:
            self._references = await self.volumes.references()
        if await self.volumes.delete(self.gw, pool, volume.name, references=self._references):
            self.report.orphan_overlays.append(volume.name)
        else:
            self.report.lookalikes.append(volume.name)

    def _abandoned(self, intent: ownership.Intent) -> bool:
        """Its domain is known nowhere and no clone in progress can still be making it."""
        return intent.domain_uuid not in self.known and self.now - intent.created > self.grace
