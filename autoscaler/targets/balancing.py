"""What the KVM target keeps about a served group: its balancers, and how a domain looks to them.

A group whose policy has a `serving` block gets one `Served` per policy version of that block; the
balancers are built once and reused while the block is unchanged (a verified backend stays verified).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from autoscaler.policy import serving as serving_spec
from autoscaler.policy import spec
from autoscaler.serving import Balancer, Member, haproxy, hooks
from autoscaler.targets.inventory import Cache, Record
from autoscaler.virt import gateway, ops

AddressOf = Callable[[Record], Awaitable[str | None]]
"""Finds the address a member is reached at (None while it has none yet)."""
RETRY_MAX = 30.0
"""Longest pause between two attempts at an unreachable balancer."""


@dataclass
class Served:
    """The balancers and hooks of one served group."""

    config: serving_spec.Serving
    balancers: list[Balancer]
    verified: bool = False
    """Every balancer's backend was checked once (exists, takes our servers)."""
    readding: set[tuple[str, str]] = field(default_factory=set)
    """(balancer label, UUID) of active members a balancer lost and is being given back, staged."""


def served(policy: spec.GroupPolicy, previous: Served | None) -> Served | None:
    """The group's Served for this policy: the previous one while its serving block is unchanged."""
    config = policy.serving
    if config is None:
        return None
    if previous is not None and previous.config == config:
        return previous
    balancers: list[Balancer] = [haproxy.Haproxy(b, policy.group, config.port) for b in config.balancers]
    return Served(config, balancers)


@dataclass
class Retry:
    """When an operation that failed may be tried again (monotonic seconds), doubling the pause."""

    next_at: float = 0.0
    delay: float = 0.0
    attempts: int = field(default=0)

    @property
    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def failed(self, first: float) -> None:
        """One more failure: wait `first`, then twice as long each time, up to 16 x `first` (at
        most RETRY_MAX), so a balancer that answers again is noticed soon."""
        self.attempts += 1
        self.delay = min(RETRY_MAX, 16 * first, self.delay * 2 if self.delay else first)
        self.next_at = time.monotonic() + self.delay


def member(record: Record, config: serving_spec.Serving) -> Member:
    """The domain as its balancers know it (address from the metadata)."""
    return Member(record.name, record.uuid, record.owner.address, config.port)


def event(kind: str, record: Record, config: serving_spec.Serving, reason: str = "") -> hooks.Event:
    """What a lifecycle hook is told about the domain."""
    return hooks.Event(
        kind, record.group, record.uuid, record.name, record.host, record.owner.address, config.port, reason
    )


def mark(cache: Cache, record: Record, note: str | None = None, failed: bool | None = None) -> None:
    """Set the note (and the failed flag) on the record and on its cached copy: a metadata write
    may have replaced the cached object with another one meanwhile."""
    copies = [record]
    cached = cache.get(record.host, record.uuid)
    if cached is not None and cached is not record:
        copies.append(cached)
    for copy in copies:
        if note is not None:
            copy.note = note
        if failed is not None:
            copy.failed = failed


async def guest_address(gw: gateway.Gateway, uuid: str) -> str | None:
    """The guest's first IPv4 address (DHCP lease, ARP, guest agent), or None while it has none."""
    found = await gw.run(ops.guest_addresses, uuid, op="probe")
    return found[0] if found else None
