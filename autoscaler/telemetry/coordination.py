"""Coordination's metrics, read at scrape time from the coordinator's own counters and state.

Alerts need three facts from every daemon: whether it leads (exactly one should), whether it can
reach an etcd quorum, and how many actions fencing refused. A scrape-time collector keeps the
coordination package free of prometheus_client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from autoscaler.telemetry.groups import PREFIX


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape shows."""

    name: str
    leading: bool
    etcd_up: bool
    leader: str | None
    groups: tuple[str, ...]
    lease_remaining: float
    leadership_changes: int
    fenced: Mapping[str, int] = field(default_factory=dict)
    watch_reconnects: Mapping[str, int] = field(default_factory=dict)
    """Times each watch (leader_key, pauses) was reopened after its stream broke."""
    watch_compactions: Mapping[str, int] = field(default_factory=dict)
    """Times each watch's revision had been compacted away (it then re-reads the key)."""
    etcd_requests: Mapping[str, int] = field(default_factory=dict)
    """Requests sent to etcd, by gateway path."""


class CoordinationCollector(Collector):
    """Exports a `Snapshot` taken at each scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """The coordination metrics."""
        s = self.snapshot()
        leading = GaugeMetricFamily(
            f"{PREFIX}_coordination_leader", "1 while this daemon is the acting leader.", labels=["daemon"]
        )
        leading.add_metric([s.name], 1.0 if s.leading else 0.0)
        yield leading
        up = GaugeMetricFamily(
            f"{PREFIX}_coordination_etcd_up", "1 while an etcd quorum answers this daemon.", labels=["daemon"]
        )
        up.add_metric([s.name], 1.0 if s.etcd_up else 0.0)
        yield up
        remaining = GaugeMetricFamily(
            f"{PREFIX}_coordination_lease_remaining_seconds",
            "Seconds the leader's lease is certainly valid (0 on a standby).",
        )
        remaining.add_metric([], s.lease_remaining)
        yield remaining
        who = GaugeMetricFamily(
            f"{PREFIX}_group_leader",
            "1 for the daemon that acts for the group, as this one sees it.",
            labels=["group", "leader"],
        )
        for group in s.groups:
            who.add_metric([group, s.leader or "none"], 1.0)
        yield who
        changes = CounterMetricFamily(
            f"{PREFIX}_coordination_leadership_changes", "Times this daemon gained or lost leadership."
        )
        changes.add_metric([], float(s.leadership_changes))
        yield changes
        yield _by_label(
            "coordination_fenced_actions",
            "Mutating libvirt calls refused because leadership could not be proved.",
            "op",
            s.fenced,
        )
        yield _by_label(
            "coordination_etcd_requests", "Requests sent to etcd, by gateway path.", "path", s.etcd_requests
        )
        yield _by_label(
            "coordination_watch_reconnects",
            "Watches on etcd reopened after their stream broke (a member lost, etcd restarted).",
            "watch",
            s.watch_reconnects,
        )
        yield _by_label(
            "coordination_watch_compactions",
            "Watches whose revision etcd had compacted away; the key was read again.",
            "watch",
            s.watch_compactions,
        )


def _by_label(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    """A counter with one series per key of `counts`."""
    family = CounterMetricFamily(f"{PREFIX}_{name}", documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], float(count))
    return family


def register(registry: CollectorRegistry, snapshot: Callable[[], Snapshot]) -> None:
    """Export the coordination metrics on `registry`."""
    registry.register(CoordinationCollector(snapshot))
