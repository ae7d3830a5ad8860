"""What the KVM target's parts share: its settings and the one mutable state they all work on.

`KvmTarget` is a facade over several parts (scale-out, scale-in, pool refill, readiness watch,
maintenance). They are plain functions over one `KvmState`, so each part lives in its own module
while the busy set, the per-domain locks and the cache stay one and the same object for all.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from autoscaler.policy import spec
from autoscaler.targets import TargetObserver, balancing, lifecycle, ownership
from autoscaler.targets import inventory as membership
from autoscaler.targets import reconcile as reconciling
from autoscaler.targets.volumes import Volumes
from autoscaler.virt import events, ops
from autoscaler.virt import gateway as gateways

MiB = 1024 * 1024
log = structlog.get_logger(__name__)


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
    address_interval: float = 30.0
    """How often a member's addresses are read again once it has one."""
    address_retry: float = 2.0
    """How often a running member without an address yet is asked for one."""
    stats_interval: float = 10.0
    """How often CPU time is read for the instances' load."""
    min_cpu_window: float = 5.0
    """Shortest interval a CPU load is computed over; readings closer to the baseline are dropped."""
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
    balancer_interval: float = 2.0
    """How often served groups' balancers are reconciled (re-add after a reload, remove strays)."""
    drain_poll: float = 0.5
    """How often a draining member's sessions are read."""
    vcpu_reserve: int = 0
    """Host CPUs kept out of the vCPU room placement gives out."""
    max_vcpu_ratio: float = 4.0
    """vCPUs allowed per usable host CPU."""
    host_dead_after: float = 300.0
    """An unreachable host's members count as unknown (ticks wait) until then, then as gone."""


class KvmState:
    """The connections, the cache and the bookkeeping of one KVM target."""

    def __init__(
        self,
        hosts: list[str],
        settings: KvmSettings,
        observer: TargetObserver,
        clock: Callable[[], float],
        new_uuid: Callable[[], str],
        ledger: ownership.Ledger | None = None,
        fence: gateways.Fence | None = None,
        acting: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings
        self.fence = fence
        """Asked before every mutating libvirt call when daemons coordinate (None: acting alone)."""
        self.may_act = acting
        """Whether background repairs, promotions and pool refills should even be tried now."""
        self.observer = observer
        self.clock = clock
        self.new_uuid = new_uuid
        self.executor = gateways.new_executor()
        self.queue: asyncio.Queue[events.Event] = asyncio.Queue()
        self.gateways = {uri: self._gateway(uri) for uri in hosts}
        self.cache = membership.Cache(hosts)
        self.volumes = Volumes(ledger or ownership.MemoryLedger(clock), self.gateways)
        # The governed groups: written only by `KvmTarget.set_policies` (a scale call's policy may be stale).
        self.policies: dict[str, spec.GroupPolicy] = {}
        self.busy: set[str] = set()
        self.locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self.free: dict[str, int] = {}
        self.cpus: dict[str, tuple[int, int]] = {}
        """Per host: (CPUs, vCPUs of running domains), read with the free memory."""
        self.vcpus: dict[str, int] = {}
        """vCPUs of one instance, per group (from its template)."""
        self.skipped: dict[str, dict[str, str]] = {}
        """Per group: hosts placement skipped at the last scale-out, and why (for /status)."""
        self.down_since: dict[str, float] = {}
        """Monotonic time each unreachable host was lost."""
        self.dead: set[str] = set()
        """Hosts unreachable for longer than host_dead_after: their members count as gone."""
        # Memory promised to domains placed but maybe not yet counted in `free` (see resources.reserving).
        self.reserved: collections.Counter[str] = collections.Counter()
        self.reserved_vcpus: collections.Counter[str] = collections.Counter()
        self.sizes: dict[str, int] = {}
        self.templates: dict[str, str] = {}
        self.goldens: dict[tuple[str, str, str], ops.Golden] = {}
        self.cpu: dict[str, tuple[int, int, float]] = {}
        self.provision: dict[str, collections.deque[float]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.essential: set[asyncio.Task[Any]] = set()
        self.upkeep_failure = ""
        self.upkeep_broken = asyncio.Event()
        self.recovering: set[str] = set()
        self.scaling_out = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.refill_wanted = asyncio.Event()
        self.reconcile_wanted = asyncio.Event()
        """Set when groups became governed: the maintenance loop reconciles every host soon."""
        self._serving_books()

    def _serving_books(self) -> None:
        """Served groups (a `serving` block): their balancers, and the work running on them."""
        self.served: dict[str, balancing.Served] = {}
        self.address_of: balancing.AddressOf = self._guest_address
        self.retries: dict[str, balancing.Retry] = {}
        self.registering: set[str] = set()
        """UUIDs whose registration step runs now (one at a time per domain)."""
        self.draining: set[str] = set()
        """UUIDs whose drain-and-destroy runs now (one at a time per domain)."""

    async def _guest_address(self, record: membership.Record) -> str | None:
        """The default address lookup: the guest's first IPv4 address libvirt knows (as the address
        watch last read it, else read now)."""
        if record.addresses:
            return record.addresses[0]
        return await balancing.guest_address(self.gateways[record.host], record.uuid)

    def _gateway(self, uri: str) -> gateways.Gateway:
        """The gateway of one host, sharing the worker pool and the event queue."""
        return gateways.Gateway(
            uri,
            self.executor,
            observer=self.observer,
            timeout=self.settings.call_timeout,
            queue=self.queue,
            fence=self.fence,
        )

    def stamp(self) -> float:
        """Now, to the millisecond the metadata keeps, so the cache and libvirt agree exactly."""
        return round(self.clock(), 3)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, essential: bool = False) -> None:
        """Run a background task owned by this target (cancelled by close).

        An essential task runs for the target's whole life: its end, by an exception or a return,
        breaks the upkeep (see `KvmTarget.upkeep`). Any task's exception is logged with its trace.
        """
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        if essential:
            self.essential.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        """Forget a finished task; log its exception; an essential one's end breaks the upkeep."""
        self.tasks.discard(task)
        essential = task in self.essential
        self.essential.discard(task)
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None:
            log.error("libvirt_background_task_crashed", task=task.get_name(), exc_info=failure)
        if essential and not self.upkeep_broken.is_set():
            why = f"{type(failure).__name__}: {failure}" if failure is not None else "returned"
            self.upkeep_failure = f"{task.get_name()}: {why}"
            self.upkeep_broken.set()
