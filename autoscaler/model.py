"""Frozen values shared by the decision core and every adapter, so that no layer needs another's types.

Times are Unix seconds as floats: the core receives `now` and never reads a clock.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of a metric."""

    value: float
    """The observed value, in the metric's own unit."""
    timestamp: float
    """When the value was observed (Unix seconds)."""


Samples = tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class Fresh:
    """The check's source answered with samples (the core still rejects NaN and stale ones)."""

    samples: Samples


@dataclass(frozen=True, slots=True)
class Missing:
    """The source answered, but with nothing usable: empty result, NaN or Inf."""

    reason: str = "empty"


@dataclass(frozen=True, slots=True)
class Stale:
    """The newest sample is older than the check's max_staleness."""

    age: float


@dataclass(frozen=True, slots=True)
class Failed:
    """The source could not be asked; `error_class` is a bounded label such as 'unavailable'."""

    error_class: str


CheckInput = Fresh | Missing | Stale | Failed


def input_kind(check_input: CheckInput) -> str:
    """The bounded label for an input: fresh, missing, stale or failed."""
    return type(check_input).__name__.lower()


class InstanceState(enum.StrEnum):
    """Where an instance is in its life, as the inventory reports it."""

    BOOTING = "booting"
    REGISTERING = "registering"
    """Up and probed, not yet confirmed by every load balancer: pending, never capacity."""
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Instance:
    """One member of a group, as observed on the hypervisor."""

    name: str
    """The libvirt domain name."""
    uuid: str
    """The libvirt domain UUID, fixed before the domain is defined."""
    state: InstanceState
    """Lifecycle state."""
    created_at: float
    """When the clone was requested (Unix seconds)."""
    ready_at: float | None = None
    """When it first counted as capacity, or None while it has not."""
    load: float | None = None
    """Recent CPU utilisation (0..1) where known, for least-loaded scale-in."""
    host: str = ""
    """The libvirt URI of the host that runs it."""
    protected: bool = False
    """Never chosen as a scale-in victim."""
    outdated: bool = False
    """Cloned from a golden image the policy no longer names: among ready members, removed first."""
    note: str = ""
    """Why a registering or draining member waits, e.g. 'lb_unreachable: ...' (status only)."""
    addresses: tuple[str, ...] = ()
    """Its IPv4 addresses as the host last saw them (DHCP lease, ARP or guest agent); may lag."""


@dataclass(frozen=True, slots=True)
class GroupInventory:
    """The observed members of one group, plus how many more the hosts can take."""

    group: str
    instances: tuple[Instance, ...] = ()
    headroom: int | None = None
    """How many more instances fit on the hosts (memory minus reserve); None means unknown."""
    pooled: int = 0
    """Pre-cloned domains waiting in the group's warm pool; never part of `instances` or `current`."""

    @property
    def members(self) -> tuple[Instance, ...]:
        """Instances that count toward the current size (draining ones are on their way out)."""
        return tuple(i for i in self.instances if i.state is not InstanceState.DRAINING)

    @property
    def current(self) -> int:
        """The current size: booting, registering, ready and failed members."""
        return len(self.members)

    @property
    def ready(self) -> int:
        """Members that serve load."""
        return sum(1 for i in self.instances if i.state is InstanceState.READY)


class Direction(enum.StrEnum):
    """Which way a decision moves the group."""

    UP = "up"
    DOWN = "down"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of the decision pipeline that changed or held the count, with why."""

    name: str
    before: int
    after: int
    reason: str


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What one check saw and proposed."""

    name: str
    kind: str
    """Input kind: fresh, missing, stale or failed."""
    value: float | None
    """The value the strategy used, if any."""
    proposal: int
    """The count this check asks for."""
    detail: str
    """How the strategy (or on_missing) got there."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of one evaluation: the count, the reason and the whole trail behind it."""

    group: str
    at: float
    current: int
    desired: int
    checks: tuple[CheckReport, ...]
    trail: tuple[Stage, ...]
    reason: str
    act: bool = True
    """False in dry-run or paused mode: the decision is recorded but not carried out."""
    victims: tuple[str, ...] = ()
    """Names of the instances to remove when scaling in, in order."""

    @property
    def direction(self) -> Direction:
        """Up, down or none, relative to the current count."""
        if self.desired > self.current:
            return Direction.UP
        if self.desired < self.current:
            return Direction.DOWN
        return Direction.NONE


@dataclass(frozen=True, slots=True)
class Change:
    """A past change of the group's size, for rate limits and cool-downs."""

    at: float
    delta: int


@dataclass(frozen=True, slots=True)
class GroupMemory:
    """What the core remembers between evaluations of one group; the engine stores it."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, count) of recent recommendations, for the stabilization windows."""
    changes: tuple[Change, ...] = ()
    """Recent changes, for the rate limits."""
    last_up_at: float | None = None
    """When the group last grew."""
    last_down_at: float | None = None
    """When the group last shrank."""
    samples: tuple[tuple[str, Samples], ...] = ()
    """(check name, its newest fresh samples) for strategies that read several, e.g. a threshold's
    trigger_samples; kept only while the check stays fresh."""
    last_fresh: tuple[tuple[str, float, int], ...] = ()
    """(check name, when its data was last fresh, the group's count then), for on_missing's bounds;
    a check whose data was never fresh is anchored where its outage was first seen."""

    def record_change(self, at: float, delta: int) -> GroupMemory:
        """The memory after the group's size really changed by `delta` at `at`."""
        if delta == 0:
            return self
        up = delta > 0
        return dataclasses.replace(
            self,
            changes=(*self.changes, Change(at, delta)),
            last_up_at=at if up else self.last_up_at,
            last_down_at=self.last_down_at if up else at,
        )


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """What a scale-out or scale-in really did; partial success is normal and reported."""

    done: tuple[str, ...] = ()
    """Names of the instances created (scale-out) or removed (scale-in)."""
    failed: int = 0
    """How many of the requested instances could not be created or removed."""
    errors: tuple[str, ...] = ()
    """One line per failure, for the log and the decision journal."""
