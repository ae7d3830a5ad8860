"""Where new instances go and how many more fit, as pure arithmetic over what each host has free.

Admission is strict: a host takes a new domain only when its free memory covers the domain's
memory plus the reserve, and its vCPU room (usable CPUs times the overcommit ratio, less the vCPUs
of the domains it runs) covers the domain's vCPUs, so scale-out never overcommits a host beyond
what the operator allowed. Among the hosts that fit, a group spreads (anti-affinity): the host
with the fewest members of the group wins, then the one with the most free memory. A host that
lacks the group's golden image never gets here; the caller skips it and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Host:
    """One host as placement sees it."""

    uri: str
    free: int
    """Free memory in bytes (uncommitted, and never above what the kernel reports)."""
    members: int = 0
    """Members of the group being placed that already run there."""
    vcpu_room: int | None = None
    """vCPUs still allowed on the host (None: not known yet, memory alone decides)."""


def fits(free: int, size: int, reserve: int) -> int:
    """How many domains of `size` bytes fit in `free` bytes while keeping `reserve` free."""
    if size <= 0:
        return 0
    return max(0, (free - reserve) // size)


def vcpu_room(cpus: int, used: int, reserve: int, ratio: float) -> int:
    """vCPUs a host may still give out: (cpus - reserve) x ratio, less those running domains use."""
    return max(0, int((cpus - reserve) * ratio) - used)


def fits_host(host: Host, size: int, reserve: int, vcpus: int) -> int:
    """How many domains fit on one host by memory and by vCPUs."""
    by_memory = fits(host.free, size, reserve)
    if host.vcpu_room is None or vcpus <= 0:
        return by_memory
    return min(by_memory, host.vcpu_room // vcpus)


def headroom(hosts: Mapping[str, int], size: int, reserve: int) -> int:
    """How many more domains of `size` fit on all hosts together, by memory."""
    return sum(fits(free, size, reserve) for free in hosts.values())


def capacity(hosts: list[Host], size: int, reserve: int, vcpus: int = 0) -> int:
    """How many more domains fit on all hosts together, by memory and vCPUs."""
    return sum(fits_host(h, size, reserve, vcpus) for h in hosts)


def place(hosts: list[Host], size: int, reserve: int, count: int, vcpus: int = 0) -> list[str]:
    """Hosts for up to `count` new domains: fewest group members first, then most free memory.

    Each placement consumes the memory and vCPUs it needs and counts as a member, so a batch
    spreads over hosts; the list is shorter than `count` when the hosts cannot take them all.
    """
    room = {h.uri: h for h in hosts}
    chosen: list[str] = []
    for _ in range(count):
        candidates = [h for h in room.values() if fits_host(h, size, reserve, vcpus) > 0]
        if not candidates:
            break
        best = min(candidates, key=lambda h: (h.members, -h.free, h.uri))
        chosen.append(best.uri)
        left = None if best.vcpu_room is None else best.vcpu_room - vcpus
        room[best.uri] = Host(best.uri, best.free - size, best.members + 1, left)
    return chosen
