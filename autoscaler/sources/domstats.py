"""A metric source from libvirt itself: per-instance CPU utilisation of a group, no exporter needed.

The value is the mean CPU utilisation (0..1 of the domain's vCPUs) over the group's READY
members, computed as a rate between two readings of their CPU time. Before a member has two
readings the result is empty, never 0: an unknown load must not look like an idle group.
"""

from __future__ import annotations

from typing import Protocol

from autoscaler import errors, model


class LoadReader(Protocol):
    """What this source needs from a target (`targets.kvm.KvmTarget` provides it)."""

    async def inventory(self, group: str) -> model.GroupInventory:
        """The group's members, with `load` where known."""
        ...

    async def refresh_load(self, group: str) -> float | None:
        """Take a CPU-time reading now; the reading time, or None when no rate is known yet."""
        ...


class DomainStatsSource:
    """MetricSource answering `<group>` or `<group>:cpu` with the group's mean CPU utilisation."""

    def __init__(self, target: LoadReader) -> None:
        self._target = target

    async def query(self, query: str, at: float) -> model.Samples:
        """One sample (mean over READY members with a known load) or nothing."""
        group = _group_of(query)
        try:
            read_at = await self._target.refresh_load(group)
            members = await self._target.inventory(group)
        except errors.TargetError as exc:
            raise errors.SourceUnavailable(f"libvirt stats for {group}: {exc}") from exc
        ready = [i for i in members.instances if i.state is model.InstanceState.READY]
        loads = [i.load for i in ready if i.load is not None]
        if not loads or read_at is None:
            return ()
        return (model.Sample(sum(loads) / len(loads), read_at),)


def _group_of(query: str) -> str:
    """The group named by a query: 'web', 'web:cpu' or 'group:cpu' style."""
    name, _, metric = query.strip().partition(":")
    if metric not in ("", "cpu"):
        raise errors.QueryError(f"libvirt source knows only the 'cpu' metric, not {metric!r}")
    if not name:
        raise errors.QueryError("libvirt source query needs a group name, e.g. 'web:cpu'")
    return name
