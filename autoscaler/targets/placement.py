"""Where new instances go and how many more fit, as pure arithmetic over per-host free memory.

Admission is strict: a host takes a new domain only when its free memory covers the domain's
memory plus the reserve, so scale-out never pushes a host into overcommit.
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


def fits(free: int, size: int, reserve: int) -> int:
    """How many domains of `size` bytes fit in `free` bytes while keeping `reserve` free."""
    if size <= 0:
        return 0
    return max(0, (free - reserve) // size)


def headroom(hosts: Mapping[str, int], size: int, reserve: int) -> int:
    """How many more domains of `size` fit on all hosts together."""
    return sum(fits(free, size, reserve) for free in hosts.values())


def place(hosts: list[Host], size: int, reserve: int, count: int) -> list[str]:
    """Hosts for up to `count` new domains: most free memory first, then fewest group members.

    Each placement consumes the memory it needs, so a batch spreads over hosts; the list is
    shorter than `count` when the hosts cannot take them all.
    """
    free = {h.uri: h.free for h in hosts}
    members = {h.uri: h.members for h in hosts}
    chosen: list[str] = []
    for _ in range(count):
        candidates = [uri for uri in free if fits(free[uri], size, reserve) > 0]
        if not candidates:
            break
        best = max(candidates, key=lambda uri: (free[uri], -members[uri], uri))
        chosen.append(best)
        free[best] -= size
        members[best] += 1
    return chosen
