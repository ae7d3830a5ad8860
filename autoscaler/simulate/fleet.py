"""A simulated group: members that become capacity one ready delay after their clone, plus a warm pool.

It stands in for the hypervisor in a replay: it answers the inventory the decision core reads, and
counts what the group costs (every member from its clone request to its removal, pool members at
their cost fraction) so that all controllers are billed alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from autoscaler import model
from autoscaler.policy import spec

DEFAULT_PAUSED_ACTIVATION = 2.0
"""Seconds from resuming a paused pool member to serving (its memory is already warm)."""
DEFAULT_COST = {"paused": 1.0, "shutoff": 0.0}
"""Fraction of an instance-hour a waiting pool member costs: paused holds its memory, shutoff only disk."""


@dataclass(frozen=True)
class PoolModel:
    """How the simulated warm pool behaves."""

    size: int = 0
    """Members kept pre-cloned and waiting."""
    activation: float = 0.0
    """Seconds from taking a pool member to it serving."""
    cost: float = 0.0
    """Fraction of an instance-hour one waiting member costs."""


def pool_model(
    pool: spec.WarmPool, boot_time: float, activation: float | None = None, cost: float | None = None
) -> PoolModel:
    """The pool of a policy; a shut-off member still boots its guest, so by default it saves the clone."""
    default_activation = DEFAULT_PAUSED_ACTIVATION if pool.state == "paused" else boot_time
    return PoolModel(
        size=pool.size,
        activation=default_activation if activation is None else activation,
        cost=DEFAULT_COST[pool.state] if cost is None else cost,
    )


@dataclass
class _Member:
    name: str
    created: float
    ready_at: float


class Fleet:
    """The members of one simulated group and its warm pool; time only moves forward."""

    def __init__(self, group: str, ready_delay: float, pool: PoolModel, start: int, now: float) -> None:
        self.group = group
        self.ready_delay = ready_delay
        self.pool = pool
        self._serial = 0
        self._members: dict[str, _Member] = {}
        self._booting: list[_Member] = []
        self._pool_waiting = pool.size
        self._pool_preparing: list[float] = []
        self._inventory: model.GroupInventory | None = None
        self.ready = 0
        self.changes = 0
        for _ in range(start):
            self._add(now - ready_delay, now)
        self.advance(now)

    @property
    def current(self) -> int:
        """Members that count toward the group's size (booting and ready)."""
        return len(self._members)

    @property
    def pool_waiting(self) -> int:
        """Pool members ready to be taken."""
        return self._pool_waiting

    def _add(self, created: float, ready_at: float) -> None:
        self._serial += 1
        member = _Member(f"{self.group}-{self._serial:06d}", created, ready_at)
        self._members[member.name] = member
        self._booting.append(member)
        self._inventory = None

    def advance(self, now: float) -> None:
        """Members whose ready time has come start to serve; prepared pool members start to wait."""
        if self._booting and min(m.ready_at for m in self._booting) <= now:
            done = [m for m in self._booting if m.ready_at <= now]
            self._booting = [m for m in self._booting if m.ready_at > now]
            self.ready += len(done)
            self._inventory = None
        if self._pool_preparing and min(self._pool_preparing) <= now:
            self._pool_waiting += sum(1 for t in self._pool_preparing if t <= now)
            self._pool_preparing = [t for t in self._pool_preparing if t > now]

    def scale_out(self, count: int, now: float) -> None:
        """Add `count` members: from the pool first (a resume), the rest as fresh clones."""
        from_pool = min(count, self._pool_waiting)
        self._pool_waiting -= from_pool
        for _ in range(from_pool):
            self._add(now, now + self.pool.activation)
            self._pool_preparing.append(now + self.ready_delay)
        for _ in range(count - from_pool):
            self._add(now, now + self.ready_delay)
        self.changes += count
        self.advance(now)

    def scale_in(self, names: Iterable[str], now: float) -> int:
        """Remove the named members; they refill the pool when it has room. Returns how many went."""
        removed = 0
        for name in names:
            member = self._members.pop(name, None)
            if member is None:
                continue
            removed += 1
            if member in self._booting:
                self._booting.remove(member)
            else:
                self.ready -= 1
            if self._pool_waiting + len(self._pool_preparing) < self.pool.size:
                self._pool_waiting += 1
        self.changes += removed
        self._inventory = None
        return removed

    def scale_in_newest(self, count: int, now: float) -> int:
        """Remove `count` members, not-ready ones first, then the newest (the baselines' order)."""
        order = sorted(self._members.values(), key=lambda m: (m.ready_at <= now, -m.created))
        return self.scale_in([m.name for m in order[:count]], now)

    def alive(self) -> float:
        """Instance-equivalents being paid for now: members, preparing pool members, waiting ones at cost."""
        return len(self._members) + len(self._pool_preparing) + self._pool_waiting * self.pool.cost

    def inventory(self) -> model.GroupInventory:
        """What the decision core sees: booting members until their ready time, then ready ones."""
        if self._inventory is None:
            booting = {m.name for m in self._booting}
            self._inventory = model.GroupInventory(
                self.group, tuple(self._instance(m, m.name in booting) for m in self._members.values())
            )
        return self._inventory

    @staticmethod
    def _instance(member: _Member, booting: bool) -> model.Instance:
        state = model.InstanceState.BOOTING if booting else model.InstanceState.READY
        ready_at = None if booting else member.ready_at
        return model.Instance(member.name, member.name, state, member.created, ready_at)
