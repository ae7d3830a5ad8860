"""Per-group gauges built at scrape time from immutable snapshots, so a scrape sees one consistent picture.

Handlers never mutate group gauges: they publish a `GroupSnapshot` (through `Metrics.publish`)
and `GroupCollector.collect()` turns the latest snapshots into fresh families on each scrape. It
never awaits, does I/O or takes a lock, and a group that is forgotten simply disappears.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from autoscaler import model

PREFIX = "autoscaler"
GROUP_STATES = ("starting", "idle", "waiting_slot", "scaling", "cooldown", "backoff", "disabled", "paused")
"""Handler states, exported as `autoscaler_group_state{state}` with 1 on the current one."""
INSTANCE_STATES = tuple(state.value for state in model.InstanceState)


@dataclasses.dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """What one group looks like right now, as its handler last published it."""

    current: int
    """Members that count toward the size (booting, ready and failed)."""
    ready: int
    """Members that serve load."""
    desired: int
    """The count the last decision asked for."""
    min: int
    """The policy's floor (after any active schedule window)."""
    max: int
    """The policy's ceiling (after any active schedule window)."""
    state: str = "starting"
    """The handler state, one of GROUP_STATES."""
    booting: int = 0
    """Members started but not ready yet."""
    draining: int = 0
    """Members on their way out (not counted in `current`)."""
    failed: int = 0
    """Members that failed their readiness or health checks."""
    cooldown_remaining: float = 0.0
    """Seconds until the current cooldown ends (0 outside a cooldown)."""
    last_evaluation: float | None = None
    """When the last evaluation succeeded (Unix seconds), or None before the first."""
    pooled: int = 0
    """Pre-cloned warm-pool domains waiting to be taken (not members yet)."""
    registering: int = 0
    """Members ready by their probe, not yet confirmed by every load balancer (not capacity)."""

    def __post_init__(self) -> None:
        if self.state not in GROUP_STATES:
            raise ValueError(f"unknown group state {self.state!r}; expected one of {GROUP_STATES}")

    @classmethod
    def of(
        cls,
        inventory: model.GroupInventory,
        *,
        desired: int,
        low: int,
        high: int,
        state: str,
        cooldown_remaining: float = 0.0,
        last_evaluation: float | None = None,
    ) -> GroupSnapshot:
        """A snapshot whose instance counts come from an inventory."""
        counts = collections.Counter(instance.state.value for instance in inventory.instances)
        return cls(
            current=inventory.current,
            ready=inventory.ready,
            desired=desired,
            min=low,
            max=high,
            state=state,
            booting=counts["booting"],
            draining=counts["draining"],
            failed=counts["failed"],
            cooldown_remaining=cooldown_remaining,
            last_evaluation=last_evaluation,
            pooled=inventory.pooled,
            registering=counts["registering"],
        )


class GroupCollector(Collector):
    """Builds the per-group gauges from the latest snapshots at scrape time (no I/O, no locks)."""

    def __init__(self, snapshots: Mapping[str, GroupSnapshot]) -> None:
        self._snapshots = snapshots

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The families this collector yields, without samples (for name-collision checks)."""
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Fresh families filled from a copy of the snapshots."""
        families = self._families()
        for group, snap in sorted(dict(self._snapshots).items()):
            self._fill(families, group, snap)
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)

        return [
            gauge("group_current_instances", "Members counting toward the group size.", ["group"]),
            gauge("group_ready_instances", "Members serving load.", ["group"]),
            gauge("group_desired_instances", "Count the last decision asked for.", ["group"]),
            gauge("group_min_instances", "Effective floor of the group.", ["group"]),
            gauge("group_max_instances", "Effective ceiling of the group.", ["group"]),
            gauge("group_instances", "Members by lifecycle state.", ["group", "state"]),
            gauge("group_state", "1 for the handler's current state, 0 for the others.", ["group", "state"]),
            gauge("group_cooldown_remaining_seconds", "Seconds until the cooldown ends.", ["group"]),
            gauge(
                "group_last_evaluation_timestamp_seconds", "When the last evaluation succeeded.", ["group"]
            ),
            gauge("group_pooled_instances", "Warm-pool domains waiting to be taken.", ["group"]),
        ]

    @staticmethod
    def _fill(families: list[GaugeMetricFamily], group: str, snap: GroupSnapshot) -> None:
        current, ready, desired, low, high, instances, state, cooldown, last, pooled = families
        for family, value in ((current, snap.current), (ready, snap.ready), (desired, snap.desired)):
            family.add_metric([group], value)
        low.add_metric([group], snap.min)
        high.add_metric([group], snap.max)
        by_state = {
            "booting": snap.booting,
            "registering": snap.registering,
            "ready": snap.ready,
            "draining": snap.draining,
            "failed": snap.failed,
        }
        for name in INSTANCE_STATES:
            instances.add_metric([group, name], by_state[name])
        for name in GROUP_STATES:
            state.add_metric([group, name], 1.0 if name == snap.state else 0.0)
        cooldown.add_metric([group], snap.cooldown_remaining)
        if snap.last_evaluation is not None:
            last.add_metric([group], snap.last_evaluation)
        pooled.add_metric([group], snap.pooled)


class UnmanagedCollector(Collector):
    """Our domains whose group has no policy here, counted by the target at scrape time.

    They are left alone (removing a policy never destroys its VMs); the gauge tells the operator
    they still exist.
    """

    def __init__(self, count: Callable[[], Mapping[str, int]]) -> None:
        self._count = count

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The family, without samples."""
        return [self._family()]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """The counts as the target reports them now."""
        family = self._family()
        for group, count in sorted(self._count().items()):
            family.add_metric([group], count)
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            f"{PREFIX}_unmanaged_instances", "Our domains whose group has no policy here.", labels=["group"]
        )
