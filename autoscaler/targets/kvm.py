"""The libvirt/KVM Target: groups of linked clones of golden images, on one or several hosts.

The engine calls `start()` once, `set_policies()` on every policy load, `ready_for(group)` and
`inventory(group)` each tick, `scale_out`/`scale_in` to act, and `close()` at shutdown; the daemon
may read `unmanaged()` and `pooled()` for gauges. The group's state lives in libvirt (ownership
metadata with the phase); the cache here is rebuilt from it by reconciles and kept current by
lifecycle events, so a crash anywhere loses nothing. Warm pools (`warmpool`) are taken first by
a scale-out and refilled in the background, one clone at a time, only while no scale-out runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import math
import os.path
import time
import uuid as uuidlib
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from autoscaler import errors, model
from autoscaler.policy import spec
from autoscaler.targets import NullObserver, TargetObserver, lifecycle, placement, readiness, warmpool
from autoscaler.targets import inventory as membership
from autoscaler.targets import reconcile as reconciling
from autoscaler.virt import events, ops, xml
from autoscaler.virt import gateway as gateways

log = structlog.get_logger(__name__)
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class KvmSettings:
    """Tuning of the KVM target; the defaults suit production hosts."""

    memory_reserve: int = 1024 * MiB
    """Free memory each host keeps beyond the domains it runs; admission never eats into it."""
    grace: reconciling.Grace = dataclasses.field(default_factory=reconciling.Grace)
    """How long half-done work may wait before the reconciler removes it."""
    stop: lifecycle.StopTimings = dataclasses.field(default_factory=lifecycle.StopTimings)
    """How patiently a domain is shut down on scale-in."""
    reconcile_interval: float = 300.0
    """Full reconcile of every host this often (also at start and after each reconnect)."""
    watch_interval: float = 0.5
    """How often booting members are checked for readiness (each group probes at its own interval)."""
    stats_interval: float = 10.0
    """How often CPU time is read for the instances' load."""
    memory_interval: float = 5.0
    """How often the hosts' free memory is read for the headroom."""
    call_timeout: float = 120.0
    """Longest wait for one libvirt call."""
    sweep_pools: tuple[str, ...] = ()
    """Pools swept for orphan overlays besides those named by policies."""
    name_attempts: int = 5
    """New UUIDs tried when a generated name is taken."""
    provision_window: int = 50
    """How many recent clone-to-ready durations `provision_seconds` summarises."""
    pool_fill_batch: int = 4
    """At most this many warm-pool domains are cloned per refill round (one at a time)."""
    close_timeout: float = 10.0
    """Longest wait for each step of `close()`; a worker still stuck after it is abandoned."""


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
    ) -> None:
        hosts = [uris] if isinstance(uris, str) else list(uris)
        if not hosts or len(set(hosts)) != len(hosts):
            raise ValueError("KvmTarget needs one or more distinct libvirt URIs")
        self.settings = settings or KvmSettings()
        self._observer: TargetObserver = observer or NullObserver()
        self._clock = clock
        self._new_uuid = new_uuid
        self._executor = gateways.new_executor()
        self._queue: asyncio.Queue[events.Event] = asyncio.Queue()
        self._gateways = {
            uri: gateways.Gateway(
                uri,
                self._executor,
                observer=self._observer,
                timeout=self.settings.call_timeout,
                queue=self._queue,
            )
            for uri in hosts
        }
        self._cache = membership.Cache(hosts)
        self._policies = {p.group: p for p in policies}
        self._busy: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._free: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._templates: dict[str, str] = {}
        self._goldens: dict[tuple[str, str, str], ops.Golden] = {}
        self._cpu: dict[str, tuple[int, int, float]] = {}
        self._provision: dict[str, collections.deque[float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recovering: set[str] = set()
        self._scaling_out = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._refill_wanted = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to every host and reconcile them; raises TargetError if a host is unreachable."""
        for gw in self._gateways.values():
            await gw.open()
        await self.reconcile()
        await self._refresh_memory()
        self._spawn(self._consume_events(), "libvirt-events")
        self._spawn(self._maintain(), "libvirt-maintenance")
        self._spawn(self._refill_loop(), "libvirt-warm-pool")

    async def close(self) -> None:
        """Stop background work, close every connection and the worker pool, each step bounded.

        Callbacks are deregistered before their connection closes (inside `Gateway.close`). A
        libvirt call that never returns cannot hang shutdown: after `close_timeout` per step it
        is logged and abandoned, and the pool is shut down without waiting for it.
        """
        limit = self.settings.close_timeout
        await self._cancel_background(limit)
        for gw in self._gateways.values():
            try:
                await gw.close(limit)
            except errors.TargetError as exc:
                log.warning("libvirt_close_failed", host=gw.uri, error=str(exc))
        if not await gateways.shutdown_executor(self._executor, limit):
            log.error("libvirt_workers_stuck", note="gave up waiting; shutdown goes on")

    def set_policies(self, policies: Iterable[spec.GroupPolicy]) -> None:
        """The groups currently governed (readiness, warm-up, pools, headroom size); pools follow."""
        self._policies = {p.group: p for p in policies}
        self._refill_wanted.set()

    async def _cancel_background(self, limit: float) -> None:
        """Cancel the background tasks, again every 0.1 s (a cancellation can be lost), up to `limit`."""
        deadline = time.monotonic() + limit
        pending = set(self._tasks)
        while pending and time.monotonic() < deadline:
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=0.1)
        if pending:
            log.error("libvirt_close_tasks_stuck", tasks=sorted(t.get_name() for t in pending))

    def unmanaged(self) -> dict[str, int]:
        """Our domains per group that has no policy here: left alone, counted for a gauge."""
        counts = collections.Counter(r.group for r in self._cache.all() if r.group not in self._policies)
        return dict(counts)

    def pooled(self) -> dict[str, int]:
        """Warm-pool domains per governed group (every pooled domain of ours, usable or not yet trimmed)."""
        return {group: len(self._cache.pooled(group)) for group in self._policies}

    @property
    def hosts(self) -> list[str]:
        """The libvirt URIs this target drives."""
        return list(self._gateways)

    def gateway(self, uri: str) -> gateways.Gateway:
        """The gateway of one host (for sources reading the same hosts, and for tests)."""
        return self._gateways[uri]

    @property
    def ready(self) -> bool:
        """True once every host has been reconciled since it last (re)connected."""
        return self._cache.ready

    def ready_for(self, group: str) -> bool:
        """Whether a tick of `group` may trust `inventory(group)`; else skip: inventory_not_ready."""
        del group  # every group spans every host
        return self._cache.ready

    # --- the Target protocol ----------------------------------------------------------------

    async def inventory(self, group: str) -> model.GroupInventory:
        """The group's members from the cache, oldest first, with the headroom and the pool size."""
        records = sorted(self._cache.members(group), key=lambda r: (r.owner.created, r.name))
        instances = tuple(membership.to_instance(r, r.uuid in self._busy) for r in records)
        pooled = len(self._cache.pooled(group))
        return model.GroupInventory(group, instances, self._headroom(group), pooled=pooled)

    async def scale_out(self, policy: spec.GroupPolicy, count: int) -> model.ScaleResult:
        """Take `count` instances from the warm pool, clone the rest placed by free memory.

        CapacityLimited when nothing fits; the pool is refilled in the background afterwards.
        """
        self._policies[policy.group] = policy
        if count <= 0:
            return model.ScaleResult()
        self._scaling_out += 1
        self._idle.clear()
        try:
            return await self._scale_out(policy, count)
        finally:
            self._scaling_out -= 1
            if not self._scaling_out:
                self._idle.set()
            self._refill_wanted.set()

    async def _scale_out(self, policy: spec.GroupPolicy, count: int) -> model.ScaleResult:
        """Admission, then the takes and clones in parallel."""
        template = await self._template(policy)
        size = self._size(policy, template)
        await self._refresh_memory()
        free = {h: self._free[h] for h, gw in self._gateways.items() if gw.connected and h in self._free}
        idle_pool = [r for r in self._cache.pooled(policy.group) if r.uuid not in self._busy]
        reserve = self.settings.memory_reserve
        taken = warmpool.choose(idle_pool, policy, count, free, size, reserve)
        self._busy.update(r.uuid for r in taken)
        chosen = placement.place(self._placement_hosts(policy.group, free), size, reserve, count - len(taken))
        refused = count - len(taken) - len(chosen)
        for _ in range(refused):
            self._observer.capacity_refused(policy.group)
        if not taken and not chosen:
            raise errors.CapacityLimited(f"no host has {size // MiB} MiB free plus the reserve")
        jobs = [self._take_one(policy, r) for r in taken]
        jobs += [self._clone_one(policy, host, template) for host in chosen]
        try:
            outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        finally:  # a take cancelled before it began must not stay busy forever
            self._busy.difference_update(r.uuid for r in taken)
        await self._refresh_memory()
        return _result(outcomes, refused=refused)

    async def scale_in(self, policy: spec.GroupPolicy, victims: Sequence[str]) -> model.ScaleResult:
        """Remove the named members; names that are not members of this group are refused."""
        self._policies[policy.group] = policy
        found = [(name, self._cache.find(policy.group, name)) for name in victims]
        refusals = [f"{name}: not a member of group {policy.group}" for name, rec in found if rec is None]
        records = [rec for _name, rec in found if rec is not None]
        outcomes = await asyncio.gather(
            *(self._remove_named(r, policy.pool) for r in records), return_exceptions=True
        )
        result = _result(outcomes, refused=0)
        await self._refresh_memory()
        return dataclasses.replace(
            result, failed=result.failed + len(refusals), errors=(*result.errors, *refusals)
        )

    # --- measurements -----------------------------------------------------------------------

    def provision_seconds(self, group: str) -> float | None:
        """The p90 of recent clone-to-ready durations of the group, None before the first one."""
        samples = sorted(self._provision.get(group, ()))
        if not samples:
            return None
        return samples[max(0, math.ceil(0.9 * len(samples)) - 1)]

    async def refresh_load(self, group: str) -> float | None:
        """Read CPU time of the group's ready members now; returns the reading time, or None."""
        members = [r for r in self._cache.group(group) if r.owner.phase is xml.Phase.ACTIVE]
        read_at: float | None = None
        for host in self._gateways:
            uuids = [r.uuid for r in members if r.host == host]
            if uuids and self._gateways[host].connected:
                readings = await self._gateways[host].run(ops.cpu_times, uuids, op="stats")
                read_at = self._apply_readings(host, readings) or read_at
        return read_at

    def _apply_readings(self, host: str, readings: dict[str, tuple[int, int, float]]) -> float | None:
        """Turn two successive CPU-time readings into a 0..1 load on each record."""
        computed = False
        for uuid, (cpu_ns, vcpus, at) in readings.items():
            previous = self._cpu.get(uuid)
            self._cpu[uuid] = (cpu_ns, vcpus, at)
            record = self._cache.get(host, uuid)
            if previous is None or record is None or at <= previous[2]:
                continue
            used = (cpu_ns - previous[0]) / 1e9 / (at - previous[2]) / max(1, vcpus)
            record.load = min(1.0, max(0.0, used))
            computed = True
        return self._clock() if computed else None

    # --- reconcile --------------------------------------------------------------------------

    async def reconcile(self) -> list[reconciling.Report]:
        """One full reconcile of every connected host."""
        reports = []
        for gw in self._gateways.values():
            if gw.connected:
                reports.append(await self._reconcile_host(gw))
        return reports

    async def _reconcile_host(self, gw: gateways.Gateway) -> reconciling.Report:
        """Reconcile one host, log what had to be repaired, and ask for the pools to be refilled."""
        pools = {p.pool for p in self._policies.values()} | set(self.settings.sweep_pools)
        report = await reconciling.reconcile_host(
            gw,
            self._cache,
            busy=self._busy,
            policies=self._policies,
            pools=pools,
            grace=self.settings.grace,
            now=self._clock(),
            remove=self._remove,
        )
        if report.repaired:
            log.info("reconcile_repaired", host=gw.uri, **dataclasses.asdict(report))
        self._refill_wanted.set()
        return report

    # --- clone and remove -------------------------------------------------------------------

    async def _clone_one(
        self, policy: spec.GroupPolicy, host: str, template: str, pooled: bool = False
    ) -> membership.Record:
        """One clone on one host, with a fresh UUID (and name) when the name is taken.

        A pooled clone is not timed as provisioning; it boots only when its pool waits paused.
        """
        gw = self._gateways[host]
        golden = await self._golden(gw, policy)
        observer = NullObserver() if pooled else self._observer
        boot = not pooled or policy.warm_pool.state == "paused"
        for _ in range(self.settings.name_attempts):
            plan = self._plan(policy, host, template, golden, pooled)
            if plan.name in self._cache.names(host):
                continue
            async with self._locks[plan.uuid]:
                self._busy.add(plan.uuid)
                try:
                    record = await lifecycle.clone(gw, plan, observer, boot)
                except errors.Conflict:
                    continue
                finally:
                    self._busy.discard(plan.uuid)
                self._cache.upsert(record)
                return record
        raise errors.Conflict(f"no free domain name for group {policy.group} on {host}")

    def _plan(
        self, policy: spec.GroupPolicy, host: str, template: str, golden: ops.Golden, pooled: bool = False
    ) -> lifecycle.Plan:
        """UUID, name and ownership chosen before the first step."""
        new_uuid = self._new_uuid()
        owner = xml.Ownership(
            group=policy.group,
            golden=policy.golden,
            generation=warmpool.fingerprint(policy) if pooled else membership.revision(policy),
            created=self._stamp(),
            phase=xml.Phase.POOLED if pooled else xml.Phase.CREATING,
            host=host,
        )
        name = xml.clone_name(policy.group, new_uuid)
        return lifecycle.Plan(new_uuid, name, host, policy.pool, golden, template, owner)

    async def _take_one(self, policy: spec.GroupPolicy, record: membership.Record) -> membership.Record:
        """One domain out of the warm pool (already marked busy); a failed take is removed."""
        owner = warmpool.joining(record, policy, membership.revision(policy), self._stamp())
        started = time.monotonic()
        try:
            async with self._locks[record.uuid]:
                try:
                    await warmpool.take(self._gateways[record.host], record, owner)
                finally:
                    self._busy.discard(record.uuid)
        except errors.TargetError:
            with contextlib.suppress(errors.TargetError):
                await self._remove(record, policy.pool)
            raise
        self._cache.upsert(record)
        self._observer.provisioned(policy.group, "start", time.monotonic() - started)
        return record

    async def _remove_named(self, record: membership.Record, pool: str) -> str:
        """Remove one member; returns its name for the result."""
        await self._remove(record, pool)
        return record.name

    async def _remove(self, record: membership.Record, pool: str | None) -> None:
        """The destroy sequence under the domain's lock; the cache shows it draining meanwhile."""
        async with self._locks[record.uuid]:
            self._busy.add(record.uuid)
            try:
                await lifecycle.destroy(self._gateways[record.host], record, self.settings.stop, pool)
            finally:
                self._busy.discard(record.uuid)
            self._cache.drop(record.host, record.uuid)
            self._cpu.pop(record.uuid, None)

    # --- templates, golden images, memory ---------------------------------------------------

    async def _template(self, policy: spec.GroupPolicy) -> str:
        """The template XML: a file when the policy names a path, else a domain on a host."""
        if policy.template in self._templates:
            return self._templates[policy.template]
        if policy.template.startswith("/") or policy.template.endswith(".xml"):
            text = await asyncio.to_thread(_read_template, policy.template)
        else:
            gw = next((g for g in self._gateways.values() if g.connected), None)
            if gw is None:
                raise gateways.ConnectionLost("no host connected")
            try:
                text = await gw.run(ops.template_xml, policy.template, op="template")
            except gateways.NotFound as exc:
                raise errors.TargetPermanent(f"template domain {policy.template!r} not found") from exc
        self._templates[policy.template] = text
        return text

    def _size(self, policy: spec.GroupPolicy, template: str) -> int:
        """Memory of one instance of the group, in bytes."""
        try:
            size = xml.memory_bytes(template)
        except ValueError as exc:
            raise errors.TargetPermanent(f"template of {policy.group}: {exc}") from exc
        self._sizes[policy.group] = size
        return size

    async def _golden(self, gw: gateways.Gateway, policy: spec.GroupPolicy) -> ops.Golden:
        """The golden image on one host, looked up once."""
        key = (gw.uri, policy.pool, policy.golden)
        if key not in self._goldens:
            try:
                self._goldens[key] = await gw.run(ops.golden, policy.pool, policy.golden, op="golden")
            except gateways.NotFound as exc:
                raise errors.TargetPermanent(f"golden image {policy.golden!r} not found on {gw.uri}") from exc
        return self._goldens[key]

    async def _refresh_memory(self) -> None:
        """Read every connected host's free memory (for placement and headroom)."""
        for uri, gw in self._gateways.items():
            if gw.connected:
                with contextlib.suppress(errors.TargetError):
                    memory = await gw.run(ops.host_memory, gw.is_test_driver, op="host_memory")
                    self._free[uri] = memory.free

    def _placement_hosts(self, group: str, free: dict[str, int]) -> list[placement.Host]:
        """Hosts with their free memory (connected ones, as given) and the group's members there."""
        members = collections.Counter(r.host for r in self._cache.members(group))
        return [placement.Host(uri, memory, members[uri]) for uri, memory in free.items()]

    def _headroom(self, group: str) -> int | None:
        """How many more instances of the group fit; None until its size is known.

        Pooled domains that hold memory (paused) join without needing any more of it.
        """
        size = self._sizes.get(group)
        if size is None or not self._free:
            return None
        policy = self._policies.get(group)
        ready = 0 if policy is None else _paused_pooled(self._cache.pooled(group), policy)
        return placement.headroom(self._free, size, self.settings.memory_reserve) + ready

    # --- warm pools -------------------------------------------------------------------------

    async def fill_pools(self) -> int:
        """One bounded refill round of every governed group's warm pool; returns how many were cloned.

        Surplus and stale pooled domains are removed first. Each clone waits until no scale-out
        runs, and a round clones at most `pool_fill_batch` per group, one at a time.
        """
        made = 0
        for policy in list(self._policies.values()):
            if self._cache.ready:
                await self._trim_pool(policy)
                made += await self._fill_group(policy)
        return made

    async def _trim_pool(self, policy: spec.GroupPolicy) -> None:
        """Remove idle pooled domains the policy no longer wants (stale, broken, beyond the size)."""
        idle = [r for r in self._cache.pooled(policy.group) if r.uuid not in self._busy]
        for record in warmpool.surplus(idle, policy):
            if record.uuid not in self._busy:
                await self._remove(record, policy.pool)

    async def _fill_group(self, policy: spec.GroupPolicy) -> int:
        """Clone pooled domains one at a time until the pool is full or the batch is spent."""
        made = 0
        while made < self.settings.pool_fill_batch and warmpool.deficit(
            self._cache.pooled(policy.group), policy
        ):
            await self._idle.wait()
            template = await self._template(policy)
            host = await self._pool_host(policy, template)
            if host is None:
                break
            await self._clone_one(policy, host, template, pooled=True)
            made += 1
        if made == self.settings.pool_fill_batch:
            self._refill_wanted.set()  # more to do: another round, after whatever else is waiting
        return made

    async def _pool_host(self, policy: spec.GroupPolicy, template: str) -> str | None:
        """Where the next pooled domain goes; a paused one must pass admission, a shut-off one not."""
        size = self._size(policy, template)
        await self._refresh_memory()
        free = {h: self._free[h] for h, gw in self._gateways.items() if gw.connected and h in self._free}
        if not free:
            return None
        if policy.warm_pool.state == "shutoff":
            return max(free, key=lambda h: (free[h], h))
        chosen = placement.place(
            self._placement_hosts(policy.group, free), size, self.settings.memory_reserve, 1
        )
        return chosen[0] if chosen else None

    async def _refill_loop(self) -> None:
        """Refill the pools whenever asked (after a scale-out, a reconcile or a policy change)."""
        while True:
            await self._refill_wanted.wait()
            self._refill_wanted.clear()
            try:
                await self.fill_pools()
            except errors.TargetError as exc:
                log.warning("warm_pool_refill_failed", error=str(exc), error_class=exc.error_class)

    async def _settle_pooled(self, record: membership.Record, policy: spec.GroupPolicy, ok: bool) -> None:
        """A booting pooled domain of a paused pool: pause it once ready, mark it failed if it never is."""
        if not ok:
            record.failed = self._clock() - record.owner.created > policy.readiness.timeout
            return
        async with self._locks[record.uuid]:
            now = self._cache.get(record.host, record.uuid)
            if now is None or now.owner.phase is not xml.Phase.POOLED or record.uuid in self._busy:
                return  # taken by a scale-out meanwhile: it is a member now, never paused by us
            await warmpool.park(self._gateways[record.host], now)

    # --- background work --------------------------------------------------------------------

    def _stamp(self) -> float:
        """Now, to the millisecond the metadata keeps, so the cache and libvirt agree exactly."""
        return round(self._clock(), 3)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run a background task owned by this target (cancelled by close)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume_events(self) -> None:
        """Apply lifecycle events to the cache; a closed connection starts recovery."""
        while True:
            event = await self._queue.get()
            if isinstance(event, events.ConnectionClosed):
                self._connection_lost(event.uri)
            elif event.uri in self._gateways:
                self._spawn(self._refresh_one(event.uri, event.uuid), "libvirt-refresh")

    async def _refresh_one(self, host: str, uuid: str) -> None:
        """Re-read one domain after an event (under its lock, so a destroy is not undone)."""
        async with self._locks[uuid]:
            try:
                view = await self._gateways[host].run(ops.get_domain, uuid, op="lookup")
            except gateways.NotFound:
                self._cache.drop(host, uuid)
                return
            except errors.TargetError:
                return
            for record in reconciling.records_of(host, [view]):
                self._cache.upsert(record)

    def _connection_lost(self, host: str) -> None:
        """Mark the host unreconciled and reconnect in the background (once at a time)."""
        self._cache.unreconciled(host)
        if host in self._recovering:
            return
        self._recovering.add(host)
        self._gateways[host].mark_broken()
        self._spawn(self._recover(host), "libvirt-reconnect")

    async def _recover(self, host: str) -> None:
        """Reconnect with back-off, then a full reconcile of that host (events were missed)."""
        try:
            gw = self._gateways[host]
            while True:
                await gw.reconnect()
                try:
                    await self._reconcile_host(gw)
                except errors.TargetError:
                    continue
                log.info("libvirt_reconnected", host=host)
                return
        finally:
            self._recovering.discard(host)

    async def _maintain(self) -> None:
        """Readiness watch, load and memory readings, periodic reconcile, broken-link recovery."""
        due = {"stats": 0.0, "memory": 0.0, "reconcile": time.monotonic() + self.settings.reconcile_interval}
        while True:
            await asyncio.sleep(self.settings.watch_interval)
            for host, gw in self._gateways.items():
                if not gw.connected:
                    self._connection_lost(host)
            try:
                await self._watch_readiness()
                await self._periodic(due)
            except errors.TargetError as exc:
                log.warning("libvirt_maintenance_failed", error=str(exc), error_class=exc.error_class)

    async def _periodic(self, due: dict[str, float]) -> None:
        """Run whichever periodic job is due."""
        now = time.monotonic()
        if now >= due["stats"]:
            due["stats"] = now + self.settings.stats_interval
            for group in {r.group for r in self._cache.all()}:
                await self.refresh_load(group)
        if now >= due["memory"]:
            due["memory"] = now + self.settings.memory_interval
            await self._refresh_memory()
        if now >= due["reconcile"]:
            due["reconcile"] = now + self.settings.reconcile_interval
            await self.reconcile()

    async def _watch_readiness(self) -> None:
        """Probe the members that are due, all at once."""
        jobs = [self._probe(r, p) for r in self._cache.all() if (p := self._probe_due(r)) is not None]
        await asyncio.gather(*jobs)

    def _probe_due(self, record: membership.Record) -> spec.GroupPolicy | None:
        """The policy to probe this record with now, or None when no probe is due."""
        policy = self._policies.get(record.group)
        if (
            policy is None
            or record.uuid in self._busy
            or record.failed
            or record.run not in membership.RUNNING
        ):
            return None
        phase = record.owner.phase
        if phase is xml.Phase.DRAINING or not _probed_in(phase, record.run, policy):
            return None
        if phase is not xml.Phase.ACTIVE and self._clock() - record.owner.created < policy.warmup:
            return None
        if time.monotonic() - record.last_probe < policy.readiness.interval:
            return None
        return policy

    async def _probe(self, record: membership.Record, policy: spec.GroupPolicy) -> None:
        """One probe; promotes a booting member to active, or counts a failure."""
        record.last_probe = time.monotonic()
        ok = await readiness.probe(self._gateways[record.host], record.uuid, policy.readiness)
        if record.owner.phase is xml.Phase.POOLED:
            await self._settle_pooled(record, policy, ok)
            return
        if record.owner.phase is xml.Phase.CREATING:
            if ok:
                await self._promote(record)
            elif self._clock() - record.owner.created > policy.readiness.timeout:
                record.failed = True
            return
        record.probe_failures = 0 if ok else record.probe_failures + 1
        record.failed = record.probe_failures >= policy.readiness.failures

    async def _promote(self, record: membership.Record) -> None:
        """phase=active in libvirt first, then in the cache; measure clone-to-ready."""
        now = self._stamp()
        async with self._locks[record.uuid]:
            current = self._cache.get(record.host, record.uuid)
            if current is None or current.owner.phase is not xml.Phase.CREATING:
                return  # removed (or being removed) while it was probed: nothing to promote
            owner = current.owner.with_phase(xml.Phase.ACTIVE, ready=now)
            await lifecycle.set_phase(self._gateways[record.host], record.uuid, owner)
            record.owner = current.owner = owner
        seconds = max(0.0, now - owner.created)
        window = self._provision.setdefault(
            record.group, collections.deque(maxlen=self.settings.provision_window)
        )
        window.append(seconds)
        self._observer.provisioned(record.group, "ready", seconds)


def _probed_in(phase: xml.Phase, run: str, policy: spec.GroupPolicy) -> bool:
    """Whether a domain in this phase and run state is probed at all.

    Booting members are; active ones only by probes that detect failure (tcp, guest agent);
    pooled ones only while they boot toward a paused pool; a paused member is a take cut short.
    """
    if phase is xml.Phase.ACTIVE:
        return policy.readiness.probe in ("tcp", "guest_agent")
    if phase is xml.Phase.POOLED:
        return policy.warm_pool.state == "paused" and run == "running"
    return run == "running"


def _paused_pooled(records: Iterable[membership.Record], policy: spec.GroupPolicy) -> int:
    """Usable pooled domains that already hold their memory."""
    return sum(1 for r in records if warmpool.usable(r, policy) and warmpool.holds_memory(r))


def _read_template(path: str) -> str:
    """A template file's text; a missing file is an operator problem."""
    if not os.path.isfile(path):
        raise errors.TargetPermanent(f"template file {path!r} not found")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _result(outcomes: Sequence[object], refused: int) -> model.ScaleResult:
    """A ScaleResult from gathered outcomes; raises the first error when nothing succeeded."""
    done = tuple(o.name if isinstance(o, membership.Record) else str(o) for o in outcomes if not _is_error(o))
    failures = [o for o in outcomes if _is_error(o)]
    if failures and not done and refused == 0:
        raise failures[0]  # type: ignore[misc]
    lines = tuple(f"{type(f).__name__}: {f}" for f in failures)
    lines += tuple("capacity: no host has room (memory plus reserve)" for _ in range(refused))
    return model.ScaleResult(done=done, failed=len(failures) + refused, errors=lines)


def _is_error(outcome: object) -> bool:
    """True for an exception returned by gather; non-target errors (bugs) are re-raised."""
    if isinstance(outcome, BaseException) and not isinstance(outcome, errors.TargetError):
        raise outcome
    return isinstance(outcome, BaseException)
