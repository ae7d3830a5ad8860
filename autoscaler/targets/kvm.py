"""The libvirt/KVM Target: groups of linked clones of golden images, on one or several hosts.

The engine calls `start()` once, `set_policies()` on every policy load, `ready_for(group)` and
`inventory(group)` each tick, `scale_out`/`scale_in` to act, and `close()` at shutdown; the daemon
may read `unmanaged()` and `pooled()` for gauges. The group's state lives in libvirt (ownership
metadata with the phase); the cache here is rebuilt from it by reconciles and kept current by
lifecycle events, so a crash anywhere loses nothing. Warm pools (`warmpool`) are taken first by
a scale-out and refilled in the background, one clone at a time, only while no scale-out runs.

`KvmTarget` is the facade; its parts work on one shared `state.KvmState`: `scaleout` (admission,
takes and clones), `scalein` (the destroy sequence), `poolfill` (warm-pool refill), `watch`
(readiness probes and promotion), `maintenance` (events, reconnects, reconciles, load readings)
and `resources` (templates, golden images, sizes, free memory, headroom).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Sequence

import structlog

from autoscaler import errors, model
from autoscaler.policy import spec
from autoscaler.targets import (
    NullObserver,
    TargetObserver,
    balancing,
    lifecycle,
    maintenance,
    ownership,
    poolfill,
    registration,
    resources,
    scalein,
    scaleout,
    watch,
)
from autoscaler.targets import inventory as membership
from autoscaler.targets import reconcile as reconciling
from autoscaler.targets.state import KvmSettings, KvmState
from autoscaler.targets.volumes import Volumes
from autoscaler.virt import gateway as gateways
from autoscaler.virt import ops

__all__ = ["KvmSettings", "KvmTarget"]

log = structlog.get_logger(__name__)


class KvmTarget:
    """The Target (see `autoscaler.targets.Target`) over one or more libvirt URIs."""

    def __init__(
        self,
        uris: str | Sequence[str],
        *,
        observer: TargetObserver | None = None,
        settings: KvmSettings | None = None,
        policies: Iterable[spec.GroupPolicy] = (),
        clock: Callable[[], float] = time.time,
        new_uuid: Callable[[], str] = lambda: str(uuidlib.uuid4()),
        address_of: balancing.AddressOf | None = None,
        ledger: ownership.Ledger | None = None,
        fence: gateways.Fence | None = None,
        acting: Callable[[], bool] = lambda: True,
    ) -> None:
        """`ledger`: the volumes this daemon created (a file ledger in the state directory in
        production); without one, a process-long ledger: nothing from before a restart is deleted.
        `fence` and `acting` come from coordination: every mutating call is fenced, and background
        repairs are not even tried while `acting()` is False (a standby)."""
        hosts = [uris] if isinstance(uris, str) else list(uris)
        if not hosts or len(set(hosts)) != len(hosts):
            raise ValueError("KvmTarget needs one or more distinct libvirt URIs")
        self.settings = settings or KvmSettings()
        observer = observer or NullObserver()
        ledger = ledger if ledger is not None else ownership.MemoryLedger(clock)
        self._state = KvmState(hosts, self.settings, observer, clock, new_uuid, ledger, fence, acting)
        self.set_policies(policies)
        if address_of is not None:
            self._state.address_of = address_of

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to every host and reconcile them.

        With one host, an unreachable host is a TargetError. With several, the daemon starts on
        those that answer; the others are recovered in the background, and until they answer (or
        are declared dead after `host_dead_after`) their members are unknown and no tick acts.
        """
        gateways_ = list(self._state.gateways.values())
        for gw in gateways_:
            try:
                await gw.open()
            except errors.TargetError as exc:
                if len(gateways_) == 1:
                    raise
                log.warning("host_unreachable_at_start", host=gw.uri, error=str(exc))
        if not any(gw.connected for gw in gateways_):
            raise gateways.ConnectionLost("no libvirt host answered")
        self._state.reconcile_wanted.clear()  # this reconcile knows the policies set so far
        await self.reconcile()
        await resources.refresh_memory(self._state)
        self._state.spawn(maintenance.consume_events(self._state), "libvirt-events", essential=True)
        self._state.spawn(maintenance.maintain(self._state), "libvirt-maintenance", essential=True)
        self._state.spawn(poolfill.refill_loop(self._state), "libvirt-warm-pool", essential=True)
        registration.verify_all(self._state)

    async def upkeep(self) -> None:
        """Return never while the background work runs; raise UpkeepFailed once a part of it died.

        Without its event consumer, readiness watch, reconciler or pool refill the cache goes
        stale unnoticed, so the daemon treats this as fatal: it exits and systemd restarts it,
        and the start's reconcile picks up from libvirt.
        """
        await self._state.upkeep_broken.wait()
        raise errors.UpkeepFailed(f"libvirt background task ended: {self._state.upkeep_failure}")

    async def close(self) -> None:
        """Stop background work, close every connection and the worker pool, each step bounded.

        Callbacks are deregistered before their connection closes (inside `Gateway.close`). A
        libvirt call that never returns cannot hang shutdown: after `close_timeout` per step it
        is logged and abandoned, and the pool is shut down without waiting for it.
        """
        limit = self.settings.close_timeout
        await self._cancel_background(limit)
        for gw in self._state.gateways.values():
            try:
                await gw.close(limit)
            except errors.TargetError as exc:
                log.warning("libvirt_close_failed", host=gw.uri, error=str(exc))
        if not await gateways.shutdown_executor(self._state.executor, limit):
            log.error("libvirt_workers_stuck", note="gave up waiting; shutdown goes on")

    def set_policies(self, policies: Iterable[spec.GroupPolicy]) -> None:
        """The groups currently governed (readiness, warm-up, pools, headroom size); pools follow.

        A group governed from now on is reconciled at once (by the maintenance loop): a crash may
        have left its domains draining or half-created while no policy governed it here. A served
        group's balancers are checked at once too, not at its first scale-out.
        """
        policies = list(policies)
        before = set(self._state.policies)
        self._state.policies = {p.group: p for p in policies}
        previous = self._state.served
        self._state.served = {
            p.group: s for p in policies if (s := balancing.served(p, previous.get(p.group))) is not None
        }
        if set(self._state.policies) - before:
            self._state.reconcile_wanted.set()
        if self._state.essential:
            registration.verify_all(self._state)
        self._state.refill_wanted.set()

    async def _cancel_background(self, limit: float) -> None:
        """Cancel the background tasks, again every 0.1 s (a cancellation can be lost), up to `limit`."""
        deadline = time.monotonic() + limit
        pending = set(self._state.tasks)
        while pending and time.monotonic() < deadline:
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=0.1)
        if pending:
            log.error("libvirt_close_tasks_stuck", tasks=sorted(t.get_name() for t in pending))

    # --- what the daemon and the sources read -----------------------------------------------

    def unmanaged(self) -> dict[str, int]:
        """Our domains per group that has no policy here: left alone, counted for a gauge."""
        counts = collections.Counter(r.group for r in self._cache.all() if r.group not in self._policies)
        return dict(counts)

    def pooled(self) -> dict[str, int]:
        """Warm-pool domains per governed group (every pooled domain of ours, usable or not yet trimmed)."""
        return {group: len(self._cache.pooled(group)) for group in self._policies}

    @property
    def volumes(self) -> Volumes:
        """How this target creates and deletes volumes (the ownership ledger behind it)."""
        return self._state.volumes

    @property
    def hosts(self) -> list[str]:
        """The libvirt URIs this target drives."""
        return list(self._state.gateways)

    def gateway(self, uri: str) -> gateways.Gateway:
        """The gateway of one host (for sources reading the same hosts, and for tests)."""
        return self._state.gateways[uri]

    @property
    def ready(self) -> bool:
        """True once every host not declared dead has been reconciled since it last (re)connected.

        A host that is unreachable but not yet dead keeps this False: its members are unknown,
        not gone, so no group may decide on a count that leaves them out.
        """
        return self._cache.ready_except(self._state.dead)

    def ready_for(self, group: str) -> bool:
        """Whether a tick of `group` may trust `inventory(group)`; else skip: inventory_not_ready."""
        del group  # every group spans every host
        return self.ready

    def hosts_status(self) -> dict[str, object]:
        """Per host: reachable, unreachable for how long, or dead; and hosts placement skipped."""
        now = time.monotonic()
        hosts: dict[str, object] = {}
        for uri, gw in self._state.gateways.items():
            since = self._state.down_since.get(uri)
            if uri in self._state.dead:
                hosts[uri] = {"state": "dead", "unreachable_seconds": round(now - (since or now))}
            elif since is not None or not gw.connected:
                hosts[uri] = {"state": "unreachable", "unreachable_seconds": round(now - (since or now))}
            else:
                hosts[uri] = {"state": "up", "cpus_vcpus_used": self._state.cpus.get(uri)}
        return {"hosts": hosts, "skipped_by_placement": self._state.skipped}

    # --- the Target protocol ----------------------------------------------------------------

    async def inventory(self, group: str) -> model.GroupInventory:
        """The group's members from the cache, oldest first, with the headroom and the pool size."""
        dead = self._state.dead
        members = (r for r in self._cache.members(group) if r.host not in dead)
        records = sorted(members, key=lambda r: (r.owner.created, r.name))
        policy = self._policies.get(group)
        golden = policy.golden if policy is not None else None
        busy = self._state.busy
        instances = tuple(membership.to_instance(r, r.uuid in busy, golden) for r in records)
        pooled = len(self._cache.pooled(group))
        return model.GroupInventory(group, instances, resources.headroom(self._state, group), pooled=pooled)

    async def scale_out(self, policy: spec.GroupPolicy, count: int) -> model.ScaleResult:
        """Take `count` instances from the warm pool, clone the rest placed by free memory.

        CapacityLimited when nothing fits; the pool is refilled in the background afterwards. A served
        group's balancers are checked first: nothing is cloned that could never serve.
        """
        await registration.verify(self._state, policy.group)
        return await scaleout.scale_out(self._state, policy, count)

    async def scale_in(self, policy: spec.GroupPolicy, victims: Sequence[str]) -> model.ScaleResult:
        """Remove the named members; names that are not members of this group are refused."""
        return await scalein.scale_in(self._state, policy, victims)

    # --- measurements, reconcile, warm pools ------------------------------------------------

    def provision_seconds(self, group: str) -> float | None:
        """The p90 of recent clone-to-ready durations of the group, None before the first one."""
        return watch.provision_seconds(self._state, group)

    async def refresh_load(self, group: str) -> float | None:
        """Read CPU time of the group's ready members now; returns the reading time, or None."""
        return await maintenance.refresh_load(self._state, group)

    async def reconcile(self) -> list[reconciling.Report]:
        """One full reconcile of every connected host."""
        return await maintenance.reconcile(self._state)

    async def take_over(self, quiet_for: float) -> list[reconciling.Report]:
        """The reconcile a new leader runs before acting, when nothing else acts any more.

        Its predecessor can no longer act (fenced), so an overlay without a domain that is older
        than `quiet_for` (the time since the predecessor's last possible call) is an orphan of its
        interrupted clone, removed now instead of after the usual grace.
        """
        grace = dataclasses.replace(self.settings.grace, overlay=quiet_for)
        return await maintenance.reconcile(self._state, grace)

    async def fill_pools(self) -> int:
        """One bounded refill round of every governed group's warm pool; returns how many were cloned.

        Surplus and stale pooled domains are removed first. Each clone waits until no scale-out
        runs, and a round clones at most `pool_fill_batch` per group, one at a time.
        """
        return await poolfill.fill_pools(self._state)

    # --- internals reachable for tests ------------------------------------------------------

    @property
    def _cache(self) -> membership.Cache:
        """The membership cache all parts share."""
        return self._state.cache

    @property
    def _policies(self) -> dict[str, spec.GroupPolicy]:
        """The governed groups' policies, by group (the live dict)."""
        return self._state.policies

    async def _template(self, policy: spec.GroupPolicy) -> str:
        """The group's template XML (see `resources.template`)."""
        return await resources.template(self._state, policy)

    async def _golden(self, gw: gateways.Gateway, policy: spec.GroupPolicy) -> ops.Golden:
        """The golden image on one host (see `resources.golden`)."""
        return await resources.golden(self._state, gw, policy)

    def _plan(
        self, policy: spec.GroupPolicy, host: str, template: str, golden: ops.Golden, pooled: bool = False
    ) -> lifecycle.Plan:
        """UUID, name and ownership of a clone (see `scaleout.plan`)."""
        return scaleout.plan(self._state, policy, host, template, golden, pooled)

    async def _remove(self, record: membership.Record, pool: str | None) -> None:
        """The destroy sequence (see `scalein.remove`)."""
        await scalein.remove(self._state, record, pool)
