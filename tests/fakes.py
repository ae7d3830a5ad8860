"""Hand-written doubles at our own seams only: the Target, the MetricSource and the Clock.

They behave like the real things at the seam (a fleet whose members boot and become ready, a source
that answers at an instant or raises SourceError) and let a test inject faults and latency.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from autoscaler import errors, model
from autoscaler.policy import spec

EPOCH = 1_767_600_000.0
"""A fixed start for fake time (a Monday, 2026-01-05 08:00 UTC)."""


class FakeClock:
    """Virtual time: `sleep` advances it instead of waiting."""

    def __init__(self, start: float = EPOCH) -> None:
        self.wall = start
        self.mono = 1000.0

    def now(self) -> float:
        """Virtual Unix seconds."""
        return self.wall

    def monotonic(self) -> float:
        """Virtual monotonic seconds."""
        return self.mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self.wall += seconds
        self.mono += seconds

    async def sleep(self, seconds: float) -> None:
        """Advance, then let other tasks run once."""
        self.advance(seconds)
        await asyncio.sleep(0)


@dataclass
class FakeTarget:
    """An in-memory fleet: members boot for `boot_time` virtual seconds, then are ready.

    Faults: `faults` is a queue of exceptions raised by the next scale calls; `fail_clones` makes
    that many clones of the next scale-out fail (partial success); `gate`, when set, makes scale
    calls wait for it (an action in flight); `reconciled` False makes ready_for() say no.
    """

    clock: FakeClock
    boot_time: float = 30.0
    headroom: int | None = None
    reconciled: bool = True
    faults: list[Exception] = field(default_factory=list)
    fail_clones: int = 0
    gate: asyncio.Event | None = None
    latency: float = 0.0
    """Real seconds each scale call takes (for shutdown and lag tests)."""
    provision_p90: float | None = None
    """What provision_seconds() reports: the measured clone-to-ready p90 (None: none measured)."""
    members: dict[str, list[model.Instance]] = field(default_factory=dict)
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    """(operation, group, count) of every scale call, in order."""
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def provision_seconds(self, group: str) -> float | None:
        """The measured clone-to-ready p90, as the KVM target reports it."""
        return self.provision_p90

    def add(self, group: str, count: int, *, age: float = 3600.0) -> list[str]:
        """Put `count` ready members into `group`, created `age` seconds ago."""
        created = self.clock.now() - age
        new = [self._instance(group, created) for _ in range(count)]
        self.members.setdefault(group, []).extend(new)
        return [i.name for i in new]

    def fail(self, group: str, name: str) -> None:
        """Mark a member FAILED, as the real target does for a crashed guest."""
        self.members[group] = [
            replace(i, state=model.InstanceState.FAILED) if i.name == name else i for i in self.members[group]
        ]

    def names(self, group: str) -> list[str]:
        """Current member names of a group."""
        return [i.name for i in self.members.get(group, [])]

    def _instance(self, group: str, created: float) -> model.Instance:
        serial = next(self._serial)
        return model.Instance(
            name=f"as-{group}-{serial:04d}",
            uuid=str(uuid.uuid4()),
            state=model.InstanceState.BOOTING,
            created_at=created,
            addresses=(f"192.0.2.{serial % 250 + 1}",),  # documentation range: never contacted
        )

    def _view(self, instance: model.Instance) -> model.Instance:
        if (
            instance.state is model.InstanceState.BOOTING
            and self.clock.now() >= instance.created_at + self.boot_time
        ):
            return replace(
                instance, state=model.InstanceState.READY, ready_at=instance.created_at + self.boot_time
            )
        return instance

    def ready_for(self, group: str) -> bool:
        """Whether the inventory may be trusted (as KvmTarget reports after its reconcile)."""
        return self.reconciled

    async def inventory(self, group: str) -> model.GroupInventory:
        """The group as it is now."""
        self.members[group] = [self._view(i) for i in self.members.get(group, [])]
        return model.GroupInventory(group, tuple(self.members[group]), self.headroom)

    async def _enter_call(self, op: str, group: str, count: int) -> None:
        self.calls.append((op, group, count))
        if self.gate is not None:
            await self.gate.wait()
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.faults:
            raise self.faults.pop(0)

    async def scale_out(self, policy: spec.GroupPolicy, count: int) -> model.ScaleResult:
        """Create `count` members; the first `fail_clones` of them fail."""
        await self._enter_call("scale_out", policy.group, count)
        failing, self.fail_clones = min(self.fail_clones, count), 0
        new = [self._instance(policy.group, self.clock.now()) for _ in range(count - failing)]
        self.members.setdefault(policy.group, []).extend(new)
        problems = tuple(f"clone {n} failed: injected" for n in range(failing))
        return model.ScaleResult(tuple(i.name for i in new), failing, problems)

    async def scale_in(self, policy: spec.GroupPolicy, victims: Sequence[str]) -> model.ScaleResult:
        """Remove the named members that exist."""
        await self._enter_call("scale_in", policy.group, len(victims))
        present = set(self.names(policy.group))
        removed = tuple(v for v in victims if v in present)
        self.members[policy.group] = [i for i in self.members.get(policy.group, []) if i.name not in removed]
        return model.ScaleResult(removed)


@dataclass
class ManagedFakeTarget(FakeTarget):
    """A FakeTarget with a life of its own, as KvmTarget has: start, close and background upkeep.

    Setting `upkeep_broken` makes `upkeep` raise, as when a background task dies; `close_hangs`
    makes `close` never return, as a libvirt call stuck in a worker thread would. `start_gate`
    makes `start` wait for it (a slow connect or first reconcile) and `start_error` makes it raise.
    """

    upkeep_broken: asyncio.Event = field(default_factory=asyncio.Event)
    close_hangs: bool = False
    start_gate: asyncio.Event | None = None
    start_error: Exception | None = None
    starting: bool = False
    """True once `start` was entered (it may still wait on `start_gate`)."""
    started: bool = False
    closed: bool = False

    async def start(self) -> None:
        """Connect and reconcile: wait for `start_gate`, then raise `start_error` or succeed."""
        self.starting = True
        if self.start_gate is not None:
            await self.start_gate.wait()
        if self.start_error is not None:
            raise self.start_error
        self.started = True

    async def close(self) -> None:
        """Stop; hangs forever when `close_hangs`."""
        if self.close_hangs:
            await asyncio.Event().wait()
        self.closed = True

    async def upkeep(self) -> None:
        """Raise once `upkeep_broken` is set."""
        await self.upkeep_broken.wait()
        raise errors.UpkeepFailed("libvirt-maintenance: RuntimeError: injected")


@dataclass
class FakeMetricSource:
    """Answers queries from scripted values; `errors` makes a query raise, `delay` makes it slow."""

    values: dict[str, float | None] = field(default_factory=dict)
    """query -> value (None answers with an empty result)."""
    errors: dict[str, errors.SourceError] = field(default_factory=dict)
    age: float = 0.0
    """How old the returned samples are, in seconds."""
    delay: float = 0.0
    """Real seconds each query takes."""
    history: model.Samples = ()
    """What query_range returns (filtered to the asked span)."""
    calls: list[tuple[str, float]] = field(default_factory=list)

    async def query(self, query: str, at: float) -> model.Samples:
        """The scripted value at `at`."""
        self.calls.append((query, at))
        if self.delay:
            await asyncio.sleep(self.delay)
        if query in self.errors:
            raise self.errors[query]
        value = self.values.get(query)
        return () if value is None else (model.Sample(value, at - self.age),)

    async def query_range(self, query: str, start: float, end: float, step: float) -> model.Samples:
        """The scripted history between `start` and `end`."""
        self.calls.append((query, end))
        return tuple(s for s in self.history if start <= s.timestamp <= end)


async def eventually(predicate: Callable[[], object], deadline: float = 5.0) -> None:
    """Wait until `predicate()` is true, failing after `deadline` real seconds."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {deadline}s")
        await asyncio.sleep(0.005)
